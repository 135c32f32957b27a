"""SLidR's loss as a module in the mmdet style (host-free; the mmengine adapter
registers it, so the pre-training config names it by ``type``).

    loss=dict(type='SuperpixelNCELoss', temperature=0.07, kept_rule='first_channel')
"""
from __future__ import annotations

from typing import Optional, Tuple

from torch import Tensor, nn

from ..core.functional import check_temperature
from ..core.reduction import check_reduction, weight_reduce
from .functional import superpixel_nce

__all__ = ['SuperpixelNCELoss']

_RULES = ('first_channel', 'count')


class SuperpixelNCELoss(nn.Module):
    """Superpixel-driven InfoNCE (SLidR, arXiv:2203.16258): each kept
    superpixel's pooled 3D feature against all kept pooled 2D features of the
    batch, its own one the positive.

    Args:
        temperature (float): τ (0.07).
        kept_rule (str): Which superpixels enter the loss: ``'first_channel'``
            (the original implementation's test on the pooled 3D feature's
            first channel) or ``'count'`` (at least one paired point).
        reduction (str): ``'mean'`` over kept superpixels (the paper's; or the
            sum over ``avg_factor``), ``'sum'`` or ``'none'`` (one value per
            kept superpixel).
        loss_weight (float): Multiplier of the result (1).

    ``forward(k (N, D), q (N, D), counts (N,))`` returns ``(loss, kept)``,
    ``kept`` the number of superpixels in the loss. With none kept the
    ``'mean'`` / ``'sum'`` loss is a graph-connected zero (and a warning).

    Raises:
        ValueError: On a bad temperature, rule or reduction.
    """

    def __init__(self,
                 temperature: float = 0.07,
                 kept_rule: str = 'first_channel',
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        if kept_rule not in _RULES:
            raise ValueError(f'kept_rule must be one of {_RULES}, got {kept_rule!r}')
        self.kept_rule = kept_rule
        self.reduction = check_reduction(reduction)
        self.loss_weight = float(loss_weight)

    def forward(self,
                k: Tensor,
                q: Tensor,
                counts: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tuple[Tensor, int]:
        """Loss over the kept superpixels.

        Args:
            k (Tensor): ``(N, D)`` pooled 3D (point) features per slot.
            q (Tensor): ``(N, D)`` pooled 2D (pixel) features per slot.
            counts (Tensor, optional): ``(N,)`` paired points per slot (the
                ``'count'`` rule needs them).
            avg_factor (float, optional): Divisor of the sum for ``'mean'``.
            reduction_override (str, optional): Overrides ``reduction``.

        Returns:
            tuple: ``(loss, kept)``.

        Raises:
            ValueError: On mismatched shapes.
        """
        reduction = check_reduction(reduction_override or self.reduction)
        if reduction == 'mean' and avg_factor is None:
            loss, kept = superpixel_nce(k, q, self.temperature, counts, self.kept_rule)
        else:
            per, kept = superpixel_nce(k, q, self.temperature, counts, self.kept_rule, 'none')
            loss = weight_reduce(per, None, reduction, avg_factor)
        return self.loss_weight * loss, kept

    def extra_repr(self) -> str:
        return (f'temperature={self.temperature}, kept_rule={self.kept_rule!r}, '
                f'reduction={self.reduction!r}, loss_weight={self.loss_weight}')
