"""Closed-form gradients of the DSD terms w.r.t. their logits (no autograd).

The memory-lean mode recomputes each tap's logits in backward and needs
``∂term/∂logits``; these formulas give it in a few element-wise passes instead
of a second autograd graph. With ``P = softmax(z)``, ``G = onehot(y)``,
``I = Σ_v P·G``, ``U = Σ_v P + Σ_v G`` (per sample and class), ``ε = 1e-5``,
``V`` voxels:

    ∂Dice/∂P   = ((2I+ε)/(U+ε)² − 2G/(U+ε)) / (B·C)
    ∂Dice/∂z   = P ⊙ (∂Dice/∂P − Σ_c P·∂Dice/∂P)
    ∂CE/∂z     = (P − G) / (B·V)

and for ``k = T²·KLpix(p_T(t) ‖ p_T(s))`` with ``p = softmax(t/T)``,
``q = softmax(s/T)``, ``KL_v = Σ_c p(log p − log q)``:

    ∂k/∂s = T·(q − p) / (B·V)
    ∂k/∂t = T·p ⊙ (log p − log q − KL_v) / (B·V)      (0 where p = 0)

All in float32 (float64 stays float64).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .functional import _SMOOTH, as_float32, dice_parts

__all__ = ['dice_ce_value_and_grad', 'TeacherKL']



def dice_ce_value_and_grad(logits: Tensor, labels: Tensor,
                           grad_scale: float = 1.0) -> Tuple[Tensor, Tensor]:
    """``DiceCE(z, y)`` and ``grad_scale·∂DiceCE/∂z``.

    Args:
        logits (Tensor): ``(B, C, *S)``.
        labels (Tensor): ``(B, 1, *S)`` long class ids (already checked).
        grad_scale (float): Upstream gradient of the term.

    Returns:
        tuple: ``(value, grad)``; ``value`` a scalar, ``grad`` like ``logits``
        (float32 or float64).
    """
    z = as_float32(logits)
    b, c = z.shape[:2]
    voxels = z[0, 0].numel()
    dims = tuple(range(2, z.dim()))
    # the value by the very operations of plugins.dsd.functional.dice_ce
    dice, (prob, onehot, inter, denom) = dice_parts(z, labels)
    ce = F.cross_entropy(z, labels[:, 0])
    union = denom + _SMOOTH
    shape = (b, c) + (1,) * len(dims)
    a = ((2.0 * inter + _SMOOTH) / union.square() / (b * c)).view(shape)
    k = (2.0 / union / (b * c)).view(shape)
    # g_P = a − k·G; Dice part P ⊙ (g_P − Σ_c P g_P); CE part (P − G)/(B·V).
    g_p = onehot.mul(k).neg_().add_(a)
    inner = (prob * g_p).sum(1, keepdim=True)
    ce_scale = 1.0 / (b * voxels)
    grad = g_p.sub_(inner).add_(ce_scale).mul_(prob).sub_(onehot.mul_(ce_scale))
    if grad_scale != 1.0:
        grad.mul_(grad_scale)
    return dice + ce, grad


class TeacherKL:
    """A teacher's tempered distribution, for several ``T²·KLpix`` terms.

    Holds ``log p = log_softmax(t/T)`` and ``p`` once; :meth:`student` gives
    each student's term and gradients, accumulating the teacher's gradient.

    Args:
        teacher (Tensor): ``(B, C, *S)`` teacher logits.
        temperature (float): ``T > 0`` (checked by the caller).
        need_teacher_grad (bool): Accumulate ``∂/∂t`` (off for a detached
            teacher or a forward-only pass).
        initial_grad (Tensor, optional): Start the teacher's gradient from this
            (e.g. its own Dice-CE gradient; used in place, not copied).
    """

    def __init__(self, teacher: Tensor, temperature: float,
                 need_teacher_grad: bool = True,
                 initial_grad: Optional[Tensor] = None) -> None:
        t = as_float32(teacher)
        self.temperature = temperature
        self.log_p = torch.log_softmax(t / temperature, dim=1)
        self.p = self.log_p.exp()
        self.positive = self.p > 0
        self.norm = temperature / (t.shape[0] * t[0, 0].numel())
        self.accumulate = need_teacher_grad
        self.teacher_grad = initial_grad
        if need_teacher_grad and initial_grad is None:
            self.teacher_grad = torch.zeros_like(t)

    def student(self, logits: Tensor, grad_scale: float = 1.0,
                need_grad: bool = True) -> Tuple[Tensor, Tensor | None]:
        """``T²·KLpix(p ‖ q)`` for one student and ``grad_scale·∂/∂s``.

        Args:
            logits (Tensor): ``(B, C, *S)`` student logits.
            grad_scale (float): Upstream gradient of this term.
            need_grad (bool): Compute gradients (student's and teacher's).

        Returns:
            tuple: ``(value, grad_student or None)``.
        """
        s = as_float32(logits)
        log_q = torch.log_softmax(s / self.temperature, dim=1)
        diff = torch.where(self.positive, self.log_p - log_q, torch.zeros((), dtype=s.dtype))
        per_voxel = (self.p * diff).sum(1, keepdim=True)
        t = self.temperature
        value = (per_voxel * (t * t)).mean()
        if not need_grad:
            return value, None
        scale = self.norm * grad_scale
        if self.accumulate:
            self.teacher_grad.add_(diff.sub_(per_voxel).mul_(self.p), alpha=scale)
        grad = log_q.exp_().sub_(self.p).mul_(scale)
        return value, grad
