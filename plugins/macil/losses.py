"""MACIL-SD losses as modules (host-free; registered in mmengine when it is imported)."""
from __future__ import annotations

from typing import Dict, Mapping, Tuple

from torch import Tensor, nn

from .functional import mil_bag_scores, mil_loss, semi_bag_contrastive

__all__ = ['TopKMILLoss', 'SemiBagContrastiveLoss']


class TopKMILLoss(nn.Module):
    """``mean_i BCE(σ(mean of the top-k_i logits of video i), y_i)``,
    ``k_i = ⌊T_i/16⌋ + 1``.

    ``forward(logits (B, T), labels (B,), lengths (B,))`` returns
    ``(loss, bag_scores (B,))``.
    """

    def forward(self, logits: Tensor, labels: Tensor, lengths: Tensor) -> Tuple[Tensor, Tensor]:
        bag = mil_bag_scores(logits, lengths)
        return mil_loss(bag, labels), bag


class SemiBagContrastiveLoss(nn.Module):
    """The four modality-aware InfoNCE terms on semi-bags.

    Args:
        temperature (float): τ (0.1).
        bag_threshold (float): Violent iff the predicted bag score is above
            it (0.5).
        upstream_rep_swap (bool): The reference's binding ``R^A = z^v``,
            ``R^V = z^a`` (default True).

    ``forward(outputs, bag_scores, lengths)`` takes the AV network's outputs
    (``prob_a``, ``prob_v``, ``feat_a``, ``feat_v``) and returns
    ``(terms, degenerate)`` (see
    :func:`plugins.macil.functional.contrastive_terms`).
    """

    def __init__(self, temperature: float = 0.1, bag_threshold: float = 0.5,
                 upstream_rep_swap: bool = True) -> None:
        super().__init__()
        self.temperature = temperature
        self.bag_threshold = bag_threshold
        self.upstream_rep_swap = upstream_rep_swap

    def forward(self, outputs: Mapping[str, Tensor], bag_scores: Tensor,
                lengths: Tensor) -> Tuple[Dict[str, Tensor], bool]:
        return semi_bag_contrastive(outputs, bag_scores, lengths, self.temperature,
                                    self.bag_threshold, self.upstream_rep_swap)

    def extra_repr(self) -> str:
        return (f'temperature={self.temperature}, bag_threshold={self.bag_threshold}, '
                f'upstream_rep_swap={self.upstream_rep_swap}')
