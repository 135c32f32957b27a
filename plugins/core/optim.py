"""One optimizer per submodule: an mmengine ``OptimWrapperDict`` from a config.

    optim_wrapper = dict(
        constructor='SubmoduleOptimWrapperConstructor',
        av=dict(optimizer=dict(type='Adam', lr=4e-4)),
        teacher=dict(optimizer=dict(type='Adam', lr=8e-5)))
    param_scheduler = dict(av=[...], teacher=[...])   # schedulers per optimizer

Each key names a submodule of the model (``model.av``); its value is an
ordinary optim-wrapper config (a top-level ``type`` is the default wrapper
type of every entry, e.g. ``'NonFiniteSkipOptimWrapper'``) built by mmengine's default constructor on that
submodule's parameters. The model's ``train_step`` receives the dict of
wrappers. This module does not import mmengine; the mmengine adapter registers
the class in ``OPTIM_WRAPPER_CONSTRUCTORS``.
"""
from __future__ import annotations

from torch import nn

__all__ = ['SubmoduleOptimWrapperConstructor']


class SubmoduleOptimWrapperConstructor:
    """Build ``OptimWrapperDict(name=wrapper of model.<name>)``.

    Args:
        optim_wrapper_cfg (dict): ``submodule name -> optim-wrapper config``;
            an optional ``type`` is the wrapper type of entries without one.
        paramwise_cfg (dict, optional): Applied to every submodule.

    Raises:
        ValueError: If the config is empty, or names a missing submodule (the
            message lists the model's children).
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict = None) -> None:
        if not optim_wrapper_cfg:
            raise ValueError('SubmoduleOptimWrapperConstructor needs one entry per submodule')
        self.cfgs = dict(optim_wrapper_cfg)
        self.default_type = self.cfgs.pop('type', 'OptimWrapper')
        if not self.cfgs:
            raise ValueError('SubmoduleOptimWrapperConstructor needs one entry per submodule')
        self.paramwise_cfg = paramwise_cfg

    def __call__(self, model: nn.Module):
        """Returns an mmengine ``OptimWrapperDict``."""
        from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapperDict
        model = getattr(model, 'module', model)  # DDP / DataParallel
        wrappers = {}
        for name, cfg in self.cfgs.items():
            sub = getattr(model, name, None)
            if not isinstance(sub, nn.Module):
                children = [n for n, _ in model.named_children()]
                raise ValueError(f'optim_wrapper names submodule {name!r}, which the model '
                                 f'lacks; its submodules are {children}')
            cfg = dict(cfg)
            cfg.setdefault('type', self.default_type)
            wrappers[name] = DefaultOptimWrapperConstructor(cfg, self.paramwise_cfg)(sub)
        return OptimWrapperDict(**wrappers)
