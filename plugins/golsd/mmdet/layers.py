"""Small layers of the GO-LSD heads: the FDR branch MLP and the optional LQE term."""
from __future__ import annotations

from typing import List

from torch import Tensor, nn

from ..functional import lqe_statistics

__all__ = ['mlp', 'LocationQuality']


def mlp(dims: int, out: int, depth: int) -> nn.Sequential:
    """``depth`` Linear+ReLU blocks of width ``dims``, then a Linear to ``out``."""
    layers: List[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(dims, dims), nn.ReLU()]
    layers.append(nn.Linear(dims, out))
    return nn.Sequential(*layers)


class LocationQuality(nn.Module):
    """The optional LQE term: ``scores + MLP(lqe_statistics(Z_i))``, one
    score added to every class logit of a query; the MLP's last layer starts
    at zero, so switching it on leaves the initial logits unchanged.

    Args:
        k (int): Top bins per edge (4).
        hidden (int): MLP width (64).
    """

    def __init__(self, k: int = 4, hidden: int = 64) -> None:
        super().__init__()
        self.k = k
        self.mlp = nn.Sequential(nn.Linear(4 * (k + 1), hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.zero_last()

    def zero_last(self) -> None:
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, scores: Tensor, corners: Tensor) -> Tensor:
        """``(B, Q, C)`` logits, ``(B, Q, 4(R+1))`` corner logits → ``(B, Q, C)``."""
        stats = lqe_statistics(corners, self.k).to(self.mlp[0].weight.dtype)
        return scores + self.mlp(stats).to(scores.dtype)
