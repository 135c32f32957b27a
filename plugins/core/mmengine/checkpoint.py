"""Checkpoints through mmengine: the project's checks on every local load, and
a checkpoint hook that never leaves a run without a checkpoint.

Imported (and registered) once mmengine is imported:

* local paths given to mmengine's ``CheckpointLoader`` (``--resume``,
  ``load_from``, ``tools/test.py``, ``mmengine.runner.load_checkpoint``) go
  through :func:`plugins.core.checkpoint.load_checkpoint`: damaged, foreign
  and unsafe files raise the project's errors naming the file, not torch's
  advice to pass ``weights_only=False``;
* ``CheckpointHook`` (the name every config uses) becomes
  :class:`SafeCheckpointHook`: with ``max_keep_ckpts`` the oldest checkpoint
  is removed only after the new one and ``last_checkpoint`` are written
  (mmengine removes it first, so a kill during the save could leave none),
  ``last_checkpoint`` is written atomically, and partial files of writes
  killed earlier are removed when training starts;
* ``torchvision://`` weights (upstream configs' ImageNet backbones) without an
  importable torchvision raise :class:`TorchvisionWeightsError`, which names
  the alternatives, instead of a bare ``ModuleNotFoundError`` mid-run.
"""
from __future__ import annotations

import os.path as osp
from typing import Any, List

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS
from mmengine.runner.checkpoint import CheckpointLoader

from ..checkpoint import atomic_write_bytes, load_checkpoint, remove_stale_partials

__all__ = ['SafeCheckpointHook', 'load_local_checkpoint']


def load_local_checkpoint(filename: str, map_location: Any = None) -> Any:
    """mmengine's loader for local paths, with the project's checks."""
    return load_checkpoint(osp.expanduser(filename), map_location=map_location)


class _DeferRemoval:
    """A file backend proxy that records removals instead of doing them."""

    def __init__(self, backend) -> None:
        self._backend = backend
        self.removed: List[str] = []

    def remove(self, path) -> None:
        self.removed.append(path)

    def rmtree(self, path) -> None:
        self.removed.append(path)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


class SafeCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook``; the previous checkpoint outlives a crash.

    Same arguments and behaviour as the host's, except that (1) checkpoints
    to a local folder are written atomically (through the ``atomic_local``
    file backend, unless ``backend_args`` or ``file_client_args`` name
    another), (2) with ``max_keep_ckpts`` the checkpoint to drop is deleted
    after the new one is complete, (3) ``last_checkpoint`` is replaced
    atomically, and (4) at the start of training, partial files of killed
    writes in the output folder are removed.
    """

    def before_train(self, runner) -> None:
        out_dir = self.out_dir if self.out_dir is not None else runner.work_dir
        if self.backend_args is None and self.file_client_args is None and \
                '://' not in str(out_dir):
            self.backend_args = dict(backend='atomic_local')
        super().before_train(runner)
        if is_main_process() and osp.isdir(str(self.out_dir)):
            remove_stale_partials(str(self.out_dir))

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        backend = self.file_backend
        deferred = _DeferRemoval(backend)
        self.file_backend = deferred
        try:
            super()._save_checkpoint_with_step(runner, step, meta)
        finally:
            self.file_backend = backend
        if not is_main_process():
            return
        # the host wrote last_checkpoint with open(..., 'w'); make it whole
        atomic_write_bytes(
            str(self.last_ckpt).encode(), osp.join(runner.work_dir, 'last_checkpoint'))
        for path in deferred.removed:
            if backend.isfile(path):
                backend.remove(path)
            elif backend.isdir(path):
                backend.rmtree(path)


class TorchvisionWeightsError(ModuleNotFoundError):
    """``torchvision://`` weights requested where torchvision cannot be imported."""


def torchvision_weights_message(name: str, where: str = '') -> str:
    """What to do instead of ``torchvision://<name>`` (``where``: the config key)."""
    at = f' ({where})' if where else ''
    return (
        f"'torchvision://{name}'{at} needs torchvision to find the weights' URL, and "
        f'torchvision cannot be imported here (not installed, or not a build for the '
        f'installed torch {torch.__version__}). Either download the file once and point the config at it, '
        f"e.g. checkpoint='/path/to/resnet50-0676ba61.pth' (for resnet50: "
        f'https://download.pytorch.org/models/resnet50-0676ba61.pth); or give an '
        f"'https://...' URL of the weights directly; or start without them: "
        f"--cfg-options model.backbone.init_cfg=None (training from scratch).")


def torchvision_available() -> bool:
    """Whether torchvision imports (its compiled ops must match the installed torch)."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # ModuleNotFoundError, or a torch/torchvision mismatch
        return False
    return True


def _load_from_torchvision(filename: str, map_location: Any = None) -> Any:
    if not torchvision_available():
        raise TorchvisionWeightsError(torchvision_weights_message(filename.split('://', 1)[1]))
    return _MMENGINE_TORCHVISION(filename, map_location)


_MMENGINE_TORCHVISION = CheckpointLoader._schemes.get('torchvision://')


def _register() -> None:
    CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)
    if _MMENGINE_TORCHVISION is not None and _MMENGINE_TORCHVISION is not _load_from_torchvision:
        CheckpointLoader.register_scheme(
            prefixes=('torchvision://', 'modelzoo://'), loader=_load_from_torchvision, force=True)
    if HOOKS.get('CheckpointHook') is not SafeCheckpointHook:
        HOOKS.register_module(name='CheckpointHook', module=SafeCheckpointHook, force=True)
    if 'SafeCheckpointHook' not in HOOKS.module_dict:
        HOOKS.register_module(module=SafeCheckpointHook)


_register()
