"""mmengine hooks of the core: exact resumption of random streams."""
from __future__ import annotations

import random
from typing import Any, Dict, Optional

import numpy as np
import torch
from mmengine.hooks import Hook

__all__ = ['RNGStateHook', 'get_rng_state', 'set_rng_state']


def get_rng_state() -> Dict[str, Any]:
    """Python, numpy, torch (and CUDA) random states of this process."""
    np_state = np.random.get_state()
    state = {
        'python':
        random.getstate(),
        # a plain tuple of builtins and one array: loads with weights_only
        'numpy': (str(np_state[0]), np.asarray(np_state[1]), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])),
        'torch':
        torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned.

    Raises:
        KeyError: If a required entry is missing.
    """
    version, *rest = state['python']
    random.setstate((version, tuple(rest[0]), rest[1]))
    np.random.set_state(tuple(state['numpy']))
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])


class RNGStateHook(Hook):
    """Save the random states in every checkpoint and restore them on resume.

    With it, a run that is killed and resumed draws the same augmentations and
    dropout masks as an uninterrupted run, so the final weights are
    bit-identical (on deterministic kernels and with ``num_workers=0``;
    worker processes reseed themselves every epoch from the run's seed).
    The states are applied in ``before_train``, after the runner has loaded
    the checkpoint and (re)seeded itself, before the first batch is drawn.
    """

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._pending: Optional[Dict[str, Any]] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_state'] = get_rng_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._pending = checkpoint.get('rng_state')

    def before_train(self, runner) -> None:
        if self._pending is not None:
            set_rng_state(self._pending)
            self._pending = None
