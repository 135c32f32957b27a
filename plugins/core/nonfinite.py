"""Finding non-finite losses and gradients before they reach the weights.

Host-free (plain torch). :func:`all_finite` costs one fused reduction and one
device sync; the slower :func:`first_non_finite` runs only once something is
known to be wrong, to name it. The mmengine optimizer wrapper and hook built
on these live in :mod:`plugins.core.mmengine.nonfinite`.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

__all__ = [
    'NonFiniteTrainingError', 'all_finite', 'first_non_finite', 'first_non_finite_grad',
    'SkipCounter'
]

Number = Union[int, float, Tensor]


class NonFiniteTrainingError(RuntimeError):
    """Training stopped: too many consecutive steps had non-finite values."""


def all_finite(tensors: Sequence[Tensor]) -> Tensor:
    """Whether every element of every tensor is finite.

    Args:
        tensors (Sequence[Tensor]): Any shapes, any floating dtypes, one device.

    Returns:
        Tensor: 0-d bool, on the tensors' device (no sync; ``True`` when empty).
    """
    tensors = [t for t in tensors if t.numel()]
    if not tensors:
        return torch.ones((), dtype=torch.bool)
    detached = [t.detach() for t in tensors]
    try:  # one fused max-abs per tensor (as torch's gradient clipping uses)
        peaks = torch._foreach_norm(detached, float('inf'))
    except (RuntimeError, TypeError, AttributeError):
        peaks = [t.abs().amax() for t in detached]
    # max |x| propagates NaN and inf, and is finite for every finite tensor
    return torch.isfinite(torch.stack([p.float() for p in peaks])).all()


def first_non_finite(values: Mapping[str, Number]) -> Optional[str]:
    """The first key (in mapping order) whose value holds a NaN or an inf.

    Args:
        values (Mapping[str, int | float | Tensor]): E.g. logged loss values.

    Returns:
        str | None: The key, or ``None`` if all are finite.
    """
    for key, value in values.items():
        if isinstance(value, Tensor):
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                return key
        elif isinstance(value, float) and not math.isfinite(value):
            return key
    return None


def first_non_finite_grad(named_params: Iterable[Tuple[str, torch.nn.Parameter]]) -> Optional[str]:
    """Name of the first parameter whose gradient holds a NaN or an inf.

    Returns:
        str | None: The name, or ``None`` if every existing gradient is finite.
    """
    for name, param in named_params:
        if param.grad is not None and not bool(torch.isfinite(param.grad).all()):
            return name
    return None


class SkipCounter:
    """Counts skipped steps and stops after too many in a row.

    Args:
        max_consecutive (int): Raise on this many consecutive skips (≥ 1).

    Raises:
        ValueError: If ``max_consecutive < 1``.
    """

    def __init__(self, max_consecutive: int = 10) -> None:
        if int(max_consecutive) < 1:
            raise ValueError(f'max_consecutive_skips must be ≥ 1, got {max_consecutive}')
        self.max_consecutive = int(max_consecutive)
        self.total = 0
        self.consecutive = 0

    def ok(self) -> None:
        """A step went through."""
        self.consecutive = 0

    def skip(self, reason: str) -> None:
        """A step was skipped because of ``reason``.

        Raises:
            NonFiniteTrainingError: On the ``max_consecutive``-th skip in a row.
        """
        self.total += 1
        self.consecutive += 1
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteTrainingError(
                f'{self.consecutive} consecutive training steps had non-finite values '
                f'(last: {reason}); stopping. Lower the learning rate, check the '
                f'inputs for NaN/inf, or raise max_consecutive_skips')
