"""Config loading and Runner construction shared by ``tools/train.py`` and
``tools/test.py``. Imports mmengine (call it only from mmengine tools)."""
from __future__ import annotations

import argparse
import os
import os.path as osp
from typing import Any, Dict, Optional

import torch

__all__ = [
    'load_config', 'build_runner', 'enable_amp', 'setup_cpu_distributed', 'add_common_args',
    'latest_checkpoint'
]


class _DictAction(argparse.Action):
    """``key=value`` pairs parsed by mmengine's ``DictAction`` (imported lazily)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from mmengine.config import DictAction
        DictAction(self.option_strings, self.dest)(parser, namespace, values, option_string)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """``--cfg-options``, ``--launcher`` and ``--local_rank`` of the tools."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=_DictAction,
        default={},
        help='override config settings, key=value pairs, e.g. '
        'train_cfg.max_epochs=2 "model.backbone.depth=18"')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def setup_cpu_distributed(cfg) -> None:
    """Prepare ``--launcher pytorch`` on a machine without a GPU.

    mmengine's pytorch launcher calls ``torch.cuda.set_device`` and wraps the
    model in DDP with ``device_ids=[LOCAL_RANK]``; both fail without CUDA. Here
    the process group is initialised with gloo from the ``torchrun``
    environment and DDP gets ``device_ids=None``.

    Raises:
        RuntimeError: If the ``torchrun`` environment variables are missing.
    """
    import torch.distributed as dist
    missing = [
        k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT') if k not in os.environ
    ]
    if missing:
        raise RuntimeError(f'--launcher pytorch needs the torchrun environment; '
                           f'missing {missing}. Start with torchrun '
                           f'--nproc_per_node N tools/train.py ...')
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def load_config(path: str,
                options: Optional[Dict[str, Any]] = None,
                work_dir: Optional[str] = None,
                launcher: str = 'none'):
    """Read a config, apply ``--cfg-options``, work dir and launcher.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
    """
    from mmengine.config import Config
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path!r} does not exist')
    cfg = Config.fromfile(path)
    if options:
        cfg.merge_from_dict(options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    if launcher == 'pytorch' and not torch.cuda.is_available():
        setup_cpu_distributed(cfg)
    return cfg


def _strings(node: Any, key: str = ''):
    """``(dotted key, value)`` of every string in a nested config."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, f'{key}.{k}' if key else str(k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _strings(v, f'{key}.{i}')
    elif isinstance(node, str):
        yield key, node


def check_torchvision_weights(cfg) -> None:
    """Fail before any work when a training config asks for ``torchvision://``
    weights and torchvision cannot be imported (``tools/train.py`` calls it;
    testing, exporting and analysing a trained checkpoint need no init weights).

    Raises:
        TorchvisionWeightsError: Naming the config key and the alternatives.
    """
    wanted = [(k, v) for k, v in _strings(cfg.to_dict() if hasattr(cfg, 'to_dict') else cfg)
              if v.startswith(('torchvision://', 'modelzoo://'))]
    if not wanted:
        return
    from plugins.core.mmengine.checkpoint import (TorchvisionWeightsError, torchvision_available,
                                                  torchvision_weights_message)
    if not torchvision_available():
        key, value = wanted[0]
        raise TorchvisionWeightsError(torchvision_weights_message(value.split('://', 1)[1], key))


def enable_show_dir(cfg, show_dir: str) -> str:
    """Make the config's visualisation hook draw every test image into ``show_dir``.

    mmdet's ``DetVisualizationHook`` writes one picture per image to its
    ``test_out_dir``; mmseg's ``SegVisualizationHook`` draws through the
    visualizer's backends, saved under the visualizer's ``save_dir``.

    Returns:
        str: The absolute folder the pictures go to (mmseg: its
        ``vis_data/vis_image`` sub-folder).

    Raises:
        ValueError: If the config has no ``default_hooks.visualization`` (e.g.
            MONAI-based configs), naming what to add.
    """
    hooks = cfg.get('default_hooks') or {}
    vis = hooks.get('visualization')
    if vis is None:
        raise ValueError("--show-dir needs a visualisation hook in the config's default_hooks "
                         "(mmdet: visualization=dict(type='DetVisualizationHook'), mmseg: "
                         "visualization=dict(type='SegVisualizationHook')) and a visualizer; "
                         'this config has none')
    folder = osp.abspath(show_dir)
    vis['draw'] = True
    if 'Det' in str(vis.get('type', '')):
        vis['test_out_dir'] = folder  # absolute: the hook's join with work_dir keeps it
        return folder
    vis['interval'] = 1  # every image, not every 50th
    if cfg.get('visualizer') is None:
        raise ValueError('--show-dir needs a visualizer in the config')
    cfg.visualizer['save_dir'] = folder
    cfg.visualizer['vis_backends'] = [dict(type='LocalVisBackend')]
    return osp.join(folder, 'vis_data', 'vis_image')


def drop_training_parts(cfg) -> None:
    """Remove what only training needs from a config about to be tested.

    mmengine builds the train loop, and with it the training dataset, the first
    time anything reads ``runner.iter`` or ``runner.epoch``; mmseg's
    ``SegVisualizationHook`` does so for every drawn test image. Without the
    training parts a test run reads only the test data, and both properties
    read 0.
    """
    for key in ('train_dataloader', 'train_cfg', 'optim_wrapper', 'param_scheduler',
                'auto_scale_lr'):
        if key in cfg:
            cfg[key] = None


def enable_amp(cfg) -> None:
    """Switch the optimizer wrapper to mmengine's ``AmpOptimWrapper``.

    Raises:
        RuntimeError: Without a GPU (mmengine's AMP wrapper needs one).
    """
    if not torch.cuda.is_available():
        raise RuntimeError('--amp needs a CUDA device; none is available here')
    wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if wrapper == 'AmpOptimWrapper':
        return
    if wrapper != 'OptimWrapper':
        raise ValueError(f'--amp works with optim_wrapper type OptimWrapper, '
                         f'the config has {wrapper!r}')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'


def build_runner(cfg):
    """Build the Runner named by ``runner_type`` (default mmengine's).

    Raises:
        KeyError: For a type name no registry knows, with the closest
            registered names (a typo in a config's ``type``).
    """
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    try:
        if 'runner_type' not in cfg:
            return Runner.from_cfg(cfg)
        return RUNNERS.build(cfg)
    except KeyError as err:
        better = suggest_registered(err)
        if better is None:
            raise
        raise better from err


def _registry_names(registry) -> set:
    names = set(registry.module_dict)
    for child in registry._children.values():
        names |= _registry_names(child)
    return names


def suggest_registered(err: KeyError) -> Optional[KeyError]:
    """A registry's "X is not in the ... registry" error with the closest
    registered names of that kind (any scope), or ``None`` for other errors."""
    import difflib
    import re

    import mmengine.registry as registries
    match = re.search(r'(\S+) is not in the (?:(\w+)::)?(\w+) registry',
                      str(err.args[0] if err.args else err))
    if not match:
        return None
    name, kind = match.group(1).strip('`\''), match.group(3)
    names = set()
    for value in vars(registries).values():
        if isinstance(value, registries.Registry) and value.name == kind:
            names |= _registry_names(value)
    close = difflib.get_close_matches(name, sorted(names), n=3, cutoff=0.6)
    hint = (f'did you mean {", ".join(repr(c) for c in close)}?'
            if close else 'no registered name is close; check the spelling and custom_imports')
    return KeyError(f'type {name!r} is not a registered {kind}: {hint}')


def finish_distributed() -> None:
    """Tear the process group down before the interpreter exits.

    Leaving a gloo group alive at exit can abort a rank ("terminate called
    without an active exception") after training has finished. The caller drops
    its runner first: the DDP wrapper's reducer holds the group, and the runner's
    reference cycles would otherwise keep it (and gloo's threads) alive into
    interpreter shutdown. A collection here frees those cycles, so the group's
    threads are joined while the interpreter is whole.
    """
    import gc

    import torch.distributed as dist
    gc.collect()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def latest_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` should continue from.

    ``last_checkpoint`` when it names an existing file; otherwise the newest
    ``epoch_N.pth`` / ``iter_N.pth`` in ``work_dir`` (a run killed between
    writing a checkpoint and updating ``last_checkpoint`` would else start
    again from scratch). Only complete files exist under those names: saves
    are atomic.

    Returns:
        str | None: The path, or ``None`` when the folder holds no checkpoint.
    """
    import re
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
        if named and osp.isfile(named):
            return named
    if not osp.isdir(work_dir):
        return None
    found = []
    for name in os.listdir(work_dir):
        match = re.fullmatch(r'(epoch|iter)_(\d+)\.pth', name)
        if match:
            found.append((int(match.group(2)), osp.join(work_dir, name)))
    return max(found)[1] if found else None
