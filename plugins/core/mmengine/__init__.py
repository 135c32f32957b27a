"""Core pieces for mmengine users; imported only once mmengine is imported.

* registers the core losses in mmengine's root ``MODELS`` (mmdet's and
  mmseg's registries fall back to it), :class:`RNGStateHook` and
  :class:`NonFiniteGuardHook` in ``HOOKS``, :class:`NonFiniteSkipOptimWrapper`
  in ``OPTIM_WRAPPERS`` and ``SubmoduleOptimWrapperConstructor`` (one
  optimizer per submodule);
* allow-lists mmengine's ``HistoryBuffer`` (with only its statistics methods
  reachable through ``getattr``) and numpy types, so that ``--resume`` and
  mmengine's own ``load_checkpoint`` load training checkpoints under
  ``torch.load(weights_only=True)``, the default since torch 2.6;
* registers a file backend named ``atomic_local`` whose ``put`` writes a
  temporary file and renames it. Nothing global changes: mmengine's ``local``
  backend stays as it is, and a config opts in with
  ``backend_args=dict(backend='atomic_local')``;
* (``checkpoint``) checks every local checkpoint load, and its
  ``CheckpointHook`` writes checkpoints through ``atomic_local`` and keeps the
  previous checkpoint until a new one is complete;
* (``sample_seed``) samplers and a pipeline wrapper that give every
  sample its own seed, for exact resume.
"""
from __future__ import annotations

import inspect
import os.path as osp
from typing import Union

from mmengine.fileio import LocalBackend, register_backend
from mmengine.fileio.backends import backends as _BACKENDS
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.registry import HOOKS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS

from ..checkpoint import allow_getattr, allow_types, atomic_write_bytes, register_numpy_types
from ..hooks import RNGStateHook
from ..losses import InfoNCELoss, TemperatureKLLoss
from ..optim import SubmoduleOptimWrapperConstructor
# these register themselves (importing them here cannot cycle, even when one of
# them is what imports mmengine first)
from . import checkpoint, nonfinite, sample_seed  # noqa: F401

__all__ = ['AtomicLocalBackend', 'ATOMIC_BACKEND']

#: the name a config's ``backend_args`` uses to opt in
ATOMIC_BACKEND = 'atomic_local'


class AtomicLocalBackend(LocalBackend):
    """mmengine's local backend with crash-safe writes."""

    def put(self, obj: bytes, filepath: Union[str, 'osp.PathLike']) -> None:
        atomic_write_bytes(obj, filepath)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write_bytes(obj.encode(encoding), filepath)


def _is_statistics_method(name: str) -> bool:
    if name.startswith('_'):
        return False
    value = HistoryBuffer.__dict__.get(name)
    return inspect.isfunction(value) or isinstance(value, (classmethod, staticmethod))


def _register() -> None:
    for cls in (TemperatureKLLoss, InfoNCELoss):
        if cls.__name__ not in MODELS.module_dict:
            MODELS.register_module(module=cls)
    if RNGStateHook.__name__ not in HOOKS.module_dict:
        HOOKS.register_module(module=RNGStateHook)
    if SubmoduleOptimWrapperConstructor.__name__ not in OPTIM_WRAPPER_CONSTRUCTORS.module_dict:
        OPTIM_WRAPPER_CONSTRUCTORS.register_module(module=SubmoduleOptimWrapperConstructor)

    register_numpy_types()
    allow_types([HistoryBuffer])
    allow_getattr(HistoryBuffer, _is_statistics_method)

    if _BACKENDS.get(ATOMIC_BACKEND) is not AtomicLocalBackend:
        register_backend(ATOMIC_BACKEND, AtomicLocalBackend)


_register()
