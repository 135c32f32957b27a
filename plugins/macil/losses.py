"""MACIL-SD's losses as modules in the mmdet style (host-free; the mmengine
adapter registers them, so configs name them by ``type``).

    loss_mil=dict(type='TopKMILLoss', loss_weight=1.0),
    loss_contrastive=dict(type='SemiBagContrastiveLoss', temperature=0.1, loss_weight=1.0)
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

from torch import Tensor, nn

from ..core.functional import check_temperature
from ..core.reduction import check_reduction, weight_reduce
from .functional import mil_bag_scores, mil_loss, semi_bag_contrastive

__all__ = ['TopKMILLoss', 'SemiBagContrastiveLoss']


class TopKMILLoss(nn.Module):
    """Top-k multiple-instance loss (MACIL-SD, arXiv:2207.05500):
    ``BCE(σ(mean of the top-k_i logits of video i), y_i)``,
    ``k_i = ⌊T_i/16⌋ + 1``.

    Args:
        reduction (str): ``'mean'`` over videos (the paper's; or the sum over
            ``avg_factor``), ``'sum'`` or ``'none'`` (one value per video).
        loss_weight (float): Multiplier of the result (1).

    ``forward(logits (B, T), labels (B,), lengths (B,))`` returns
    ``(loss, bag_scores (B,))``.

    Raises:
        ValueError: On an unknown reduction.
    """

    def __init__(self, reduction: str = 'mean', loss_weight: float = 1.0) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.loss_weight = float(loss_weight)

    def forward(self,
                logits: Tensor,
                labels: Tensor,
                lengths: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tuple[Tensor, Tensor]:
        """Loss and bag scores.

        Args:
            logits (Tensor): ``(B, T)`` snippet logits (padding past
                ``lengths`` is ignored).
            labels (Tensor): ``(B,)`` video labels in {0, 1}.
            lengths (Tensor): ``(B,)`` true lengths ``T_i``.
            weight (Tensor, optional): ``(B,)`` per-video weights.
            avg_factor (float, optional): Divisor of the sum for ``'mean'``.
            reduction_override (str, optional): Overrides ``reduction``.

        Returns:
            tuple: ``(loss, bag_scores (B,))``.

        Raises:
            ValueError: On bad shapes, lengths or labels.
        """
        reduction = check_reduction(reduction_override or self.reduction)
        bag = mil_bag_scores(logits, lengths)
        if reduction == 'mean' and weight is None and avg_factor is None:
            loss = mil_loss(bag, labels)  # the paper's mean, in one kernel
        else:
            loss = weight_reduce(
                mil_loss(bag, labels, reduction='none'), weight, reduction, avg_factor)
        return self.loss_weight * loss, bag

    def extra_repr(self) -> str:
        return f'reduction={self.reduction!r}, loss_weight={self.loss_weight}'


class SemiBagContrastiveLoss(nn.Module):
    """The four modality-aware InfoNCE terms on semi-bags (MACIL-SD,
    arXiv:2207.05500).

    Each term is an InfoNCE mean over its semi-bag rows, as the paper defines
    it; the module scales them by ``loss_weight`` (the per-epoch ``λ_b``,
    ``λ_n`` of :class:`~plugins.macil.mmengine.MACILLambdaHook` apply on top).

    Args:
        temperature (float): τ (0.1).
        bag_threshold (float): Violent iff the predicted bag score is above
            it (0.5).
        upstream_rep_swap (bool): The original implementation's binding
            ``R^A = z^v``, ``R^V = z^a`` (default True).
        loss_weight (float): Multiplier of every term (1).

    ``forward(outputs, bag_scores, lengths)`` takes the AV network's outputs
    (``prob_a``, ``prob_v``, ``feat_a``, ``feat_v``) and returns
    ``(terms, degenerate)`` (see
    :func:`plugins.macil.functional.contrastive_terms`).

    Raises:
        ValueError: On a temperature that is not positive, or a threshold
            outside (0, 1).
    """

    def __init__(self,
                 temperature: float = 0.1,
                 bag_threshold: float = 0.5,
                 upstream_rep_swap: bool = True,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        check_temperature(temperature)
        if not 0 < bag_threshold < 1:
            raise ValueError(f'bag_threshold must be in (0, 1), got {bag_threshold}')
        self.temperature = temperature
        self.bag_threshold = bag_threshold
        self.upstream_rep_swap = upstream_rep_swap
        self.loss_weight = float(loss_weight)

    def forward(self, outputs: Mapping[str, Tensor], bag_scores: Tensor,
                lengths: Tensor) -> Tuple[Dict[str, Tensor], bool]:
        terms, degenerate = semi_bag_contrastive(outputs, bag_scores, lengths, self.temperature,
                                                 self.bag_threshold, self.upstream_rep_swap)
        if self.loss_weight != 1.0:
            terms = {k: self.loss_weight * v for k, v in terms.items()}
        return terms, degenerate

    def extra_repr(self) -> str:
        return (f'temperature={self.temperature}, bag_threshold={self.bag_threshold}, '
                f'upstream_rep_swap={self.upstream_rep_swap}, loss_weight={self.loss_weight}')
