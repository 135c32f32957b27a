"""GO-LSD's two losses as modules, in the mmdet style (``loss_weight``,
``reduction``, ``avg_factor``).

They are plain ``nn.Module`` s over :mod:`plugins.golsd.functional`; the mmdet
adapter registers them in mmdet's ``MODELS``, so a head config names them as
``loss_fgl=dict(type='FGLLoss', loss_weight=0.15)`` and
``loss_ddf=dict(type='DDFLoss', loss_weight=1.5, temperature=5.0)``.

The GO-LSD heads compute the stock pair for every decoder layer in one fused
pass (:func:`~plugins.golsd.functional.fdr_layer_losses`), scaled by these
modules' ``loss_weight`` and ``temperature``; any other registered module
(a subclass, say) gets its own ``forward`` called layer by layer.
"""
from __future__ import annotations

from typing import Optional, Tuple

from torch import Tensor, nn

from ..core.functional import check_temperature
from ..core.reduction import check_reduction
from .functional import ddf_distribution_losses, ddf_loss, fgl_loss, fgl_pair_losses

__all__ = ['FGLLoss', 'DDFLoss']

Targets = Tuple[Tensor, Tensor, Tensor]


class FGLLoss(nn.Module):
    """Fine-Grained Localization loss (D-FINE, arXiv:2410.13842, Eq. 5).

    ``(1/N) Σ_pairs u · Σ_k [ω_← CE(Z_k, n_←) + ω_→ CE(Z_k, n_← + 1)]``: the
    distribution focal loss of GFL with D-FINE's non-uniform bins, weighted by
    the IoU ``u`` of each matched box.

    Args:
        reduction (str): ``'mean'`` (sum over pairs / ``avg_factor``, at least
            1; default the pair count), ``'sum'`` or ``'none'`` (one value per
            pair).
        loss_weight (float): Multiplier of the result (D-FINE: 0.15).

    Raises:
        ValueError: On an unknown reduction.
    """

    def __init__(self, reduction: str = 'mean', loss_weight: float = 0.15) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.loss_weight = float(loss_weight)

    def forward(self,
                pred: Tensor,
                target: Targets,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """Loss of one layer.

        Args:
            pred (Tensor): ``(M, 4(R+1))`` corner logits of the matched queries.
            target (tuple): ``(n_←, ω_←, ω_→)``, each ``(M, 4)``, from
                :func:`~plugins.golsd.functional.two_bin_targets`.
            weight (Tensor, optional): ``(M,)`` IoU weights (detached); default 1.
            avg_factor (float, optional): ``N`` of the mean.
            reduction_override (str, optional): Overrides ``reduction``.

        Returns:
            Tensor: Scalar, or ``(M,)`` with ``reduction='none'``.

        Raises:
            ValueError: On mismatched shapes, a target bin outside ``[0, R−1]``,
                or ``avg_factor`` with ``'sum'``.
        """
        reduction = check_reduction(reduction_override or self.reduction, 'reduction_override')
        m = pred.shape[0]
        iou = weight if weight is not None else pred.new_ones(m)
        if reduction == 'mean':
            return self.loss_weight * fgl_loss(pred, *target, iou,
                                               m if avg_factor is None else avg_factor)
        if avg_factor is not None:
            raise ValueError(f"avg_factor needs reduction='mean', got {reduction!r}")
        per_pair = fgl_pair_losses(pred, *target) * iou.detach().to(pred.dtype)
        return self.loss_weight * (per_pair if reduction == 'none' else per_pair.sum())

    def extra_repr(self) -> str:
        return f'reduction={self.reduction!r}, loss_weight={self.loss_weight}'


class DDFLoss(nn.Module):
    """Decoupled Distillation Focal loss (D-FINE, arXiv:2410.13842, Eq. 6).

    A student layer's edge distributions distilled from the last layer's:
    ``ℓ_e = w_e · T² · KL(p_t ‖ p_s)`` with ``p = softmax(z / T)``, then the
    decoupled mean ``(√N_m μ_m + √N_u μ_u) / (√N_m + √N_u)`` of the matched
    (``μ_m``) and unmatched (``μ_u``) distributions.

    Args:
        temperature (float): ``T`` (D-FINE: 5).
        reduction (str): ``'mean'`` (the decoupled mean), ``'sum'`` or
            ``'none'`` (``(B, Q, 4)`` terms ``ℓ_e``).
        loss_weight (float): Multiplier of the result (D-FINE: 1.5).

    Raises:
        ValueError: On a bad temperature or reduction.
    """

    def __init__(self,
                 temperature: float = 5.0,
                 reduction: str = 'mean',
                 loss_weight: float = 1.5) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.reduction = check_reduction(reduction)
        self.loss_weight = float(loss_weight)

    def forward(self,
                pred: Tensor,
                target: Tensor,
                matched_mask: Tensor,
                weight: Tensor,
                counts: Optional[Tuple[float, float]] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """Loss of one student layer.

        Args:
            pred (Tensor): ``(B, Q, 4(R+1))`` student corner logits.
            target (Tensor): Same shape, the teacher (last layer; detached here).
            matched_mask (Tensor): ``(B, Q)`` bool, the matched queries.
            weight (Tensor): ``(B, Q)`` detached weights (IoU where matched,
                the teacher's class confidence elsewhere).
            counts (tuple, optional): ``(N_m, N_u)`` of the √ weights (default
                this call's distribution counts).
            reduction_override (str, optional): Overrides ``reduction``.

        Returns:
            Tensor: Scalar, or ``(B, Q, 4)`` with ``reduction='none'``.

        Raises:
            ValueError: On mismatched shapes.
        """
        reduction = check_reduction(reduction_override or self.reduction, 'reduction_override')
        if reduction == 'mean':
            return self.loss_weight * ddf_loss(pred, target, matched_mask, weight, self.temperature,
                                               counts)
        terms = ddf_distribution_losses(pred, target, weight, self.temperature)
        return self.loss_weight * (terms if reduction == 'none' else terms.sum())

    def extra_repr(self) -> str:
        return (f'temperature={self.temperature}, reduction={self.reduction!r}, '
                f'loss_weight={self.loss_weight}')


def stock_pair(fgl: nn.Module, ddf: nn.Module) -> bool:
    """Whether both are exactly the stock modules, whose two losses the heads
    compute together in one fused pass (a subclass gets its own ``forward``)."""
    return type(fgl) is FGLLoss and type(ddf) is DDFLoss
