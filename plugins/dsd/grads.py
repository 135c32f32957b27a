"""Closed-form logit gradients of the DSD terms, computed in place.

The memory-lean mode needs each term and ``∂term/∂logits`` without an
autograd graph. With ``P = softmax(z)``, ``G = onehot(y)``, ``I = Σ_v P·G``,
``U = Σ_v P + Σ_v G`` (per sample and class), ``ε = 1e-5``, ``N`` voxels:

    ∂Dice/∂P   = ((2I+ε)/(U+ε)² − 2G/(U+ε)) / (B·C) =: a − k·G
    ∂Dice/∂z   = P ⊙ (∂Dice/∂P − Σ_c P·∂Dice/∂P)
    ∂CE/∂z     = (P − G) / (B·N)

so ``∂DiceCE/∂z = P ⊙ (a + 1/(BN) − r) − G ⊙ (k_y P_y + 1/(BN))`` with the
per-voxel ``r = Σ_c a_c P_c − k_y P_y``. For ``k = T²·KLpix(p ‖ q)`` with
``p = softmax(t/T)``, ``q = softmax(s/T)``, ``KL_v = Σ_c p(log p − log q)``:

    ∂k/∂s = T·(q − p) / (B·N)
    ∂k/∂t = T·p ⊙ (log p − log q − KL_v) / (B·N)

Full-size maps are ``(B, C, N)`` (any voxel order: every term is a per-voxel
function summed over voxels). The functions work in place on caller-owned
buffers: on CPU a new 50 MB tensor costs as much as several passes over an
existing one (fresh pages), so the lean mode reuses a few buffers for every
tap. Float32 (float64 stays float64).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .functional import _SMOOTH, as_float32

__all__ = ['softmax_pair', 'class_counts', 'dice_ce_grad_', 'TeacherKL', 'dice_ce_value_and_grad']

# log-probabilities below this are exactly zero probabilities in float32 and
# float64; clamping them keeps 0·log 0 terms at 0 instead of NaN
_LOG_FLOOR = -1e4


def softmax_pair(z: Tensor, spare: Tensor, floor: bool = False) -> Tuple[Tensor, Tensor]:
    """``(log_softmax(z), softmax(z))`` over dim 1, written into ``(spare, z)``.

    Args:
        z (Tensor): ``(B, C, N)`` logits; consumed (holds ``softmax`` after).
        spare (Tensor): ``(B, C, N)`` buffer; holds ``log_softmax`` after.
        floor (bool): Clamp ``log_softmax`` at -1e4 (where the probability is
            exactly 0), so that ``p·log p`` is 0, not NaN, for ``-inf`` logits.

    Returns:
        tuple: ``(log_p, p)``, the same tensors as ``(spare, z)``.
    """
    torch.log_softmax(z, 1, out=spare)
    if floor:
        spare.clamp_(min=_LOG_FLOOR)
    torch.exp(spare, out=z)
    return spare, z


def class_counts(labels: Tensor,
                 num_classes: int,
                 dtype: torch.dtype,
                 mask: Optional[Tensor] = None) -> Tensor:
    """``Σ_v G``: ``(B, C)`` voxel counts per sample and class of ``(B, 1, N)``
    ids (only where the ``(B, 1, N)`` 0/1 ``mask`` is 1, when given)."""
    ids = labels.flatten(1)
    weight = (
        torch.ones(ids.shape, dtype=dtype, device=ids.device)
        if mask is None else mask.flatten(1).to(dtype))
    return torch.zeros(
        ids.shape[0], num_classes, dtype=dtype, device=ids.device).scatter_add_(1, ids, weight)


def dice_ce_grad_(prob: Tensor,
                  log_prob: Tensor,
                  labels: Tensor,
                  counts: Tensor,
                  grad: Optional[Tensor],
                  grad_scale: float = 1.0,
                  accumulate: bool = False,
                  mask: Optional[Tensor] = None,
                  valid: Optional[Tensor] = None) -> Tensor:
    """``DiceCE`` from ``P`` and ``log P``, and ``grad_scale·∂DiceCE/∂z`` into ``grad``.

    Args:
        prob, log_prob (Tensor): ``(B, C, N)`` ``softmax(z)`` and ``log_softmax(z)``.
        labels (Tensor): ``(B, 1, N)`` long class ids in the same voxel order.
        counts (Tensor): ``(B, C)`` :func:`class_counts` of ``labels``.
        grad (Tensor, optional): ``(B, C, N)`` buffer; None: value only.
        grad_scale (float): Upstream gradient of the term.
        accumulate (bool): Add to ``grad`` instead of overwriting it.
        mask (Tensor, optional): ``(B, 1, N)`` 0/1 kept voxels (ignored ones
            carry any valid id); they leave the Dice sums and the CE mean, and
            get zero gradient. ``prob`` is multiplied by it in place.
        valid (Tensor, optional): ``max(Σ mask, 1)``, the CE denominator.

    Returns:
        Tensor: The scalar ``Dice + CE``.
    """
    b, c, n = prob.shape
    p_y = prob.gather(1, labels)  # (B, 1, N)
    if mask is None:
        ce = log_prob.gather(1, labels).mean().neg()
        ce_scale = grad_scale / (b * n)
    else:
        ce = log_prob.gather(1, labels).mul_(mask).sum().div(valid).neg()
        ce_scale = grad_scale / valid
        prob.mul_(mask)
        p_y.mul_(mask)
    inter = torch.zeros_like(counts).scatter_add_(1, labels[:, 0], p_y[:, 0])
    union = prob.sum(2) + counts + _SMOOTH
    dice = (1.0 - (2.0 * inter + _SMOOTH) / union).mean()
    if grad is None:
        return dice + ce
    a = (2.0 * inter + _SMOOTH) / union.square() * (grad_scale / (b * c))
    k = (2.0 * grad_scale / (b * c)) / union
    hit = k.gather(1, labels[:, 0]).unsqueeze(1).mul_(p_y)  # k_y P_y
    inner = torch.bmm(a.unsqueeze(1), prob).sub_(hit)  # r
    col = (a + ce_scale).unsqueeze(2)  # ce_scale: float or 0-d
    if accumulate:
        grad.addcmul_(prob, col)
    else:
        torch.mul(prob, col, out=grad)
    grad.addcmul_(prob, inner, value=-1.0)
    hit = hit.add_(ce_scale) if mask is None else hit.addcmul_(mask, ce_scale)
    grad.scatter_add_(1, labels, hit.neg_())
    return dice + ce


class TeacherKL:
    """A teacher's tempered distribution, for several ``T²·KLpix`` terms.

    Holds ``log p`` and ``p`` (in the two given buffers); :meth:`student`
    gives each student's term and gradient and folds its share of the
    teacher's gradient into one accumulator, :meth:`finish` turns that into
    ``∂/∂t``.

    Args:
        scaled_logits (Tensor): ``(B, C, N)`` ``t/T``; becomes ``p`` in place.
        prob (Tensor): ``(B, C, N)`` buffer; becomes ``log p``.
        temperature (float): ``T > 0`` (checked by the caller).
        temp (Tensor): ``(B, C, N)`` buffer used during construction only.
        accumulator (Tensor, optional): ``(B, C, N)`` buffer for the teacher's
            gradient (None: no teacher gradient).
        mask (Tensor, optional): ``(B, 1, N)`` 0/1 kept voxels: the KL mean
            runs over them (denominator ``valid``), the others get zero gradient.
        valid (Tensor, optional): ``max(Σ mask, 1)``.
    """

    def __init__(self,
                 scaled_logits: Tensor,
                 prob: Tensor,
                 temperature: float,
                 temp: Tensor,
                 accumulator: Optional[Tensor] = None,
                 mask: Optional[Tensor] = None,
                 valid: Optional[Tensor] = None) -> None:
        self.log_p, self.p = softmax_pair(scaled_logits, prob, floor=True)
        self.temperature = temperature
        b, _, n = prob.shape
        self.mask, self.valid = mask, valid
        self.norm = temperature / (b * n) if mask is None else temperature / valid
        self.entropy = torch.mul(self.p, self.log_p, out=temp).sum(1, keepdim=True)
        self.acc = accumulator
        self.weight = 0.0
        self.kl_sum: Optional[Tensor] = None

    def student(self,
                scaled_logits: Tensor,
                spare: Tensor,
                grad_scale: float = 1.0,
                need_grad: bool = True) -> Tuple[Tensor, Tensor, Tensor]:
        """``T²·KLpix(p ‖ q)`` for one student given ``s/T``.

        Args:
            scaled_logits (Tensor): ``(B, C, N)`` ``s/T``; consumed.
            spare (Tensor): ``(B, C, N)`` buffer.
            grad_scale (float): Upstream gradient of this term.
            need_grad (bool): Form the student's gradient and accumulate the
                teacher's share.

        Returns:
            tuple: ``(value, out, free)``: the scalar term, the buffer holding
            ``grad_scale·∂term/∂s`` (with ``need_grad``; else ``q``), and the
            other buffer, free for reuse (the two given buffers).
        """
        log_q, q = softmax_pair(scaled_logits, spare)
        if need_grad and self.acc is not None:
            # Σ_s w_s·(log q_s + KL_s); the teacher's gradient is p ⊙ (W·log p − that)
            if self.kl_sum is None:
                torch.mul(log_q, grad_scale, out=self.acc)
            else:
                self.acc.add_(log_q, alpha=grad_scale)
        kl = self.entropy - log_q.mul_(self.p).sum(1, keepdim=True)  # (B, 1, N)
        t = self.temperature
        if self.mask is None:
            value = kl.mean() * (t * t)
        else:
            value = (kl * self.mask).sum() / self.valid * (t * t)
        if not need_grad:
            return value, q, log_q
        if self.acc is not None:
            if self.kl_sum is None:
                self.kl_sum = kl.mul_(grad_scale)
            else:
                self.kl_sum.add_(kl, alpha=grad_scale)
            self.weight += grad_scale
        q.sub_(self.p).mul_(self.norm * grad_scale)
        if self.mask is not None:
            q.mul_(self.mask)
        return value, q, log_q

    def finish(self, teacher_grad: Optional[Tensor]) -> Optional[Tensor]:
        """Add ``∂/∂t`` of the students seen to ``teacher_grad`` (in place)
        and return it; with ``teacher_grad`` None it is written into the
        accumulator buffer. Returns ``teacher_grad`` unchanged (maybe None)
        when nothing was accumulated."""
        if self.acc is None or self.kl_sum is None:
            return teacher_grad
        acc = self.acc.add_(self.kl_sum).sub_(self.log_p, alpha=self.weight).mul_(self.p)
        if self.mask is not None:
            acc.mul_(self.mask)
        if teacher_grad is None:
            return acc.mul_(-self.norm)
        return teacher_grad.sub_(acc, alpha=self.norm)


def dice_ce_value_and_grad(logits: Tensor,
                           labels: Tensor,
                           grad_scale: float = 1.0) -> Tuple[Tensor, Tensor]:
    """``DiceCE(z, y)`` and ``grad_scale·∂DiceCE/∂z`` for ``(B, C, *S)`` logits
    (allocating; the lean mode uses the in-place pieces)."""
    z = as_float32(logits)
    flat = z.reshape(z.shape[0], z.shape[1], -1).clone()
    ids = labels.reshape(labels.shape[0], 1, -1)
    log_p, prob = softmax_pair(flat, torch.empty_like(flat))
    grad = torch.empty_like(flat)
    value = dice_ce_grad_(prob, log_p, ids, class_counts(ids, z.shape[1], z.dtype), grad,
                          grad_scale)
    return value, grad.view(z.shape)
