"""Weighting and reduction of element-wise losses, mmdet-style.

The contract follows mmdet's ``weight_reduce_loss`` so that our registered
losses behave like the host's (``reduction``, ``loss_weight``, ``avg_factor``),
with one deliberate difference: the mean of an *empty* loss is a
graph-connected zero instead of NaN, so an image without targets never poisons
a training step.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ['REDUCTIONS', 'check_reduction', 'weight_reduce']

REDUCTIONS = ('none', 'mean', 'sum')
_EPS = torch.finfo(torch.float32).eps


def check_reduction(reduction: str, name: str = 'reduction') -> str:
    """Validate a reduction string.

    Raises:
        ValueError: If ``reduction`` is not one of ``'none'``, ``'mean'``,
            ``'sum'``.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f'{name} must be one of {REDUCTIONS}, got '
                         f'{reduction!r}')
    return reduction


def weight_reduce(loss: Tensor,
                  weight: Optional[Tensor] = None,
                  reduction: str = 'mean',
                  avg_factor: Optional[float] = None) -> Tensor:
    """Apply an element-wise weight, then reduce.

    Args:
        loss (Tensor): Element-wise loss of any shape ``(*)``.
        weight (Tensor, optional): Broadcastable to ``loss``.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``.
        avg_factor (float | Tensor, optional): Divide the sum by this instead
            of the element count (only with ``'mean'``).

    Returns:
        Tensor: ``loss`` unchanged in shape for ``'none'``, else a scalar. The
        mean of an empty ``loss`` is ``0`` with a gradient path.

    Raises:
        ValueError: On an unknown ``reduction``, ``avg_factor`` together with
            ``'sum'``, or a ``weight`` that does not broadcast.
    """
    check_reduction(reduction)
    if weight is not None:
        try:
            torch.broadcast_shapes(weight.shape, loss.shape)
        except RuntimeError as err:
            raise ValueError(f'weight of shape {tuple(weight.shape)} does not '
                             f'broadcast to loss of shape '
                             f'{tuple(loss.shape)}') from err
        loss = loss * weight
    if reduction == 'none':
        return loss
    if avg_factor is None:
        if reduction == 'sum' or loss.numel() == 0:
            return loss.sum()
        return loss.mean()
    if reduction == 'sum':
        raise ValueError('avg_factor can not be used with reduction="sum"')
    return loss.sum() / (avg_factor + _EPS)
