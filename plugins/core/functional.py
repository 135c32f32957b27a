"""Distillation maths shared by the plugins, on plain tensors.

Nothing here imports a host library. Every function is dims-agnostic where the
maths is: the class (or bin) axis is an argument.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from plugins.core.in_batch_nce import in_batch_nce_rows

__all__ = [
    'temperature_kl', 'temperature_kl_last', 'tempered_teacher', 'fused_kl_forward',
    'fused_kl_backward', 'info_nce', 'check_temperature'
]


def check_temperature(temperature: float, name: str = 'temperature') -> float:
    """Validate a softmax temperature.

    Raises:
        ValueError: If ``temperature`` is not a finite number > 0.
    """
    t = float(temperature)
    if not math.isfinite(t) or t <= 0:
        raise ValueError(f'{name} must be a finite number > 0, got '
                         f'{temperature!r}')
    return t


def temperature_kl(student: Tensor,
                   teacher: Tensor,
                   temperature: float = 1.0,
                   dim: int = 1,
                   class_reduction: str = 'sum',
                   detach_teacher: bool = True) -> Tensor:
    """Temperature-scaled KL divergence from teacher to student, T²-scaled.

    Computes, at every position and with ``T = temperature``::

        T² · Σ_c p_t,c (log p_t,c − log p_s,c),
        p_t = softmax(teacher / T), log p_s = log_softmax(student / T)

    (a *mean* over ``c`` instead of the sum when ``class_reduction='mean'``).
    Terms with ``p_t,c = 0`` contribute exactly 0, also where the teacher logit
    is ``-inf``. Half-precision inputs are computed in float32.

    Args:
        student (Tensor): Student logits, shape ``(N, C, *)`` with the class
            axis at ``dim``.
        teacher (Tensor): Teacher logits, the shape of ``student`` or with size
            1 on non-class axes, broadcast over them (its softmax is then
            computed once for all students).
        temperature (float): ``T > 0``.
        dim (int): Class (or bin) axis.
        class_reduction (str): ``'sum'`` (the KL proper) or ``'mean'`` over the
            class axis.
        detach_teacher (bool): Stop the gradient at the teacher logits.

    Returns:
        Tensor: The divergence per position, the input shape without ``dim``
        (e.g. ``(N, *)``), in float32 or float64.

    Raises:
        ValueError: On mismatched shapes, a bad temperature or
            ``class_reduction``, or an out-of-range ``dim``.
    """
    if student.shape != teacher.shape and not (
            teacher.dim() == student.dim()
            and all(t in (1, s) for s, t in zip(student.shape, teacher.shape)) and
        (not -student.dim() <= dim < student.dim() or teacher.shape[dim] == student.shape[dim])):
        raise ValueError(f'student logits {tuple(student.shape)} and teacher '
                         f'logits {tuple(teacher.shape)} differ in shape (the teacher may '
                         'only have size 1 where the student has more, e.g. one teacher '
                         'for several students)')
    if class_reduction not in ('sum', 'mean'):
        raise ValueError(f"class_reduction must be 'sum' or 'mean', got "
                         f'{class_reduction!r}')
    if not -student.dim() <= dim < max(student.dim(), 1):
        raise ValueError(f'dim {dim} is out of range for logits of shape '
                         f'{tuple(student.shape)}')
    t = check_temperature(temperature)
    if detach_teacher:
        teacher = teacher.detach()
    if student.dtype in (torch.float16, torch.bfloat16):
        student = student.float()
    if teacher.dtype in (torch.float16, torch.bfloat16):
        teacher = teacher.float()
    log_p_t = F.log_softmax(teacher / t, dim=dim)
    log_p_s = F.log_softmax(student / t, dim=dim)
    p_t = log_p_t.exp()
    terms = torch.where(p_t > 0, p_t * (log_p_t - log_p_s),
                        torch.zeros((), dtype=p_t.dtype, device=p_t.device))
    kl = terms.sum(dim) if class_reduction == 'sum' else terms.mean(dim)
    return kl * (t * t)


def tempered_teacher(teacher: Tensor, temperature: float) -> Tuple[Tensor, Tensor]:
    """``(p_t, Σ p_t log p_t)`` of detached teacher logits over the last axis
    (terms with ``p_t = 0`` are exactly 0), for :func:`fused_kl_forward`."""
    log_p_t = F.log_softmax(teacher.detach() / temperature, dim=-1)
    p_t = log_p_t.exp()
    neg_entropy = torch.where(p_t > 0, p_t * log_p_t,
                              torch.zeros((), dtype=p_t.dtype, device=p_t.device)).sum(-1)
    return p_t, neg_entropy


def fused_kl_forward(student: Tensor, p_t: Tensor, neg_entropy: Tensor,
                     temperature: float) -> Tuple[Tensor, Tensor]:
    """``(KL, softmax(z/T))`` without autograd: ``T² (Σ p_t log p_t + logsumexp(z/T)
    − Σ p_t z/T)`` over the last axis; the softmax is what the gradient needs
    (:func:`fused_kl_backward`).

    Args:
        student (Tensor): ``(*, C)`` finite logits ``z``.
        p_t, neg_entropy (Tensor): From :func:`tempered_teacher`, broadcastable.
        temperature (float): ``T``.

    Returns:
        tuple: ``(kl (*), q (*, C))``.
    """
    t = float(temperature)
    m = student.amax(-1, keepdim=True)
    q = torch.sub(student, m).div_(t).exp_()  # one buffer, in place
    z = q.sum(-1, keepdim=True)
    q.div_(z)
    lse = z.squeeze(-1).log_().add_(m.squeeze(-1), alpha=1 / t)
    dot = torch.linalg.vecdot(student, p_t.expand_as(student)).div_(t)
    return (neg_entropy + lse - dot).mul_(t * t), q


def fused_kl_backward(q: Tensor, p_t: Tensor, grad: Tensor, temperature: float,
                      out: Tensor) -> Tensor:
    """Write ``T (q − p_t) · grad`` (the gradient of :func:`fused_kl_forward`'s KL
    with respect to the student logits) into ``out``, shaped as ``q``."""
    torch.sub(q, p_t, out=out)
    return out.mul_((grad * float(temperature)).unsqueeze(-1))


class _FusedKL(torch.autograd.Function):
    """KL of ``logits[:n]`` against a fixed teacher; zero gradient on ``logits[n:]``."""

    @staticmethod
    def forward(ctx, logits: Tensor, n: int, p_t: Tensor, neg_entropy: Tensor, t: float) -> Tensor:
        kl, q = fused_kl_forward(logits[:n], p_t, neg_entropy, t)
        ctx.save_for_backward(q, p_t)
        ctx.t, ctx.shape = t, logits.shape
        return kl

    @staticmethod
    def backward(ctx, grad: Tensor):
        q, p_t = ctx.saved_tensors
        n = q.shape[0]
        out = grad.new_empty(ctx.shape)
        fused_kl_backward(q, p_t, grad, ctx.t, out[:n])
        out[n:].zero_()
        return out, None, None, None, None


def temperature_kl_last(student: Tensor,
                        teacher: Tensor,
                        temperature: float = 1.0,
                        num_students: Optional[int] = None) -> Tensor:
    """:func:`temperature_kl` over the last axis with a detached teacher, fused.

    The same value (up to float rounding) as ``temperature_kl(student,
    teacher, T, dim=-1, detach_teacher=True)``, computed as
    ``T² (Σ p_t log p_t + logsumexp(z_s/T) − Σ p_t z_s/T)``: the teacher's
    softmax and entropy are computed once (also when it is broadcast over
    several students) and the student's log-softmax is never materialised;
    the gradient is ``T (softmax(z_s/T) − p_t)``.

    Args:
        student (Tensor): ``(S, *, C)`` finite logits.
        teacher (Tensor): ``(S, *, C)`` or broadcastable to it (size 1 on leading axes).
        temperature (float): ``T > 0``.
        num_students (int, optional): Use only ``student[:num_students]``
            (e.g. all decoder layers but the last, which is the teacher)
            without slicing the input, so that its gradient is written in
            one buffer.

    Returns:
        Tensor: ``(S', *)`` in float32 or float64, ``S' = num_students or S``.

    Raises:
        ValueError: As :func:`temperature_kl`, or on ``num_students`` out of range.
    """
    n = student.shape[0] if num_students is None else int(num_students)
    if not 0 < n <= student.shape[0]:
        raise ValueError(f'num_students must be in [1, {student.shape[0]}], got {n}')
    shape = (n, *student.shape[1:])
    if tuple(teacher.shape) != shape and not (teacher.dim() == student.dim()
                                              and teacher.shape[-1] == student.shape[-1] and all(
                                                  t in (1, s)
                                                  for s, t in zip(shape, teacher.shape))):
        raise ValueError(f'student logits {shape} and teacher '
                         f'logits {tuple(teacher.shape)} differ in shape')
    t = check_temperature(temperature)
    if student.dtype in (torch.float16, torch.bfloat16):
        student = student.float()
    p_t, neg_entropy = tempered_teacher(teacher.to(student.dtype), t)
    return _FusedKL.apply(student, n, p_t, neg_entropy, t)


def info_nce(query: Tensor,
             positive: Tensor,
             negatives: Optional[Tensor] = None,
             temperature: float = 0.07,
             normalize: bool = False,
             reduction: str = 'none') -> Tensor:
    """InfoNCE (softmax cross-entropy over similarities) per query row.

    Two layouts:

    * ``negatives=None`` (in-batch): logits ``ℓ_ij = ⟨q_i, p_j⟩ / τ`` for all
      pairs and the target of row ``i`` is ``j = i``; the other rows of
      ``positive`` are the negatives. ``positive`` may have more rows than
      ``query`` (extra rows act as negatives only). Computed in row blocks
      (:mod:`plugins.core.in_batch_nce`): the ``N×M`` logits are never held
      whole, forward or backward; differentiable once.
    * ``negatives`` given (shared bank): logits
      ``[⟨q_i, p_i⟩, ⟨q_i, n_1⟩, …, ⟨q_i, n_M⟩] / τ`` with the target at 0.

    Args:
        query (Tensor): ``(N, D)``.
        positive (Tensor): ``(N, D)``, or ``(M ≥ N, D)`` in-batch.
        negatives (Tensor, optional): ``(M, D)`` shared negatives.
        temperature (float): ``τ > 0``.
        normalize (bool): L2-normalise every row first (cosine similarity).
        reduction (str): ``'none'`` (per row), ``'mean'`` or ``'sum'``, as
            ``F.cross_entropy`` reduces (the mean in one kernel).

    Returns:
        Tensor: ``(N,)`` per-row loss (empty when ``N = 0``), or a scalar.

    Raises:
        ValueError: On non-2D inputs, mismatched feature sizes or row counts,
            a bad temperature or an unknown reduction.
    """
    t = check_temperature(temperature)
    tensors = {'query': query, 'positive': positive}
    if negatives is not None:
        tensors['negatives'] = negatives
    for name, x in tensors.items():
        if x.dim() != 2:
            raise ValueError(f'{name} must be 2-D (rows, features), got shape '
                             f'{tuple(x.shape)}')
        if x.shape[1] != query.shape[1]:
            raise ValueError(f'{name} has {x.shape[1]} features, query has '
                             f'{query.shape[1]}')
    n = query.shape[0]
    if negatives is None and positive.shape[0] < n:
        raise ValueError(f'positive has {positive.shape[0]} rows, fewer than '
                         f'the {n} query rows')
    if negatives is not None and positive.shape[0] != n:
        raise ValueError(f'with shared negatives, positive needs one row per '
                         f'query ({n}), got {positive.shape[0]}')
    if normalize:
        query = F.normalize(query, dim=1)
        positive = F.normalize(positive, dim=1)
        if negatives is not None:
            negatives = F.normalize(negatives, dim=1)
    if negatives is None:
        # row blocks: the (N, M) logits are never held whole (in_batch_nce)
        rows = in_batch_nce_rows(query, positive, t)
        if reduction == 'none':
            return rows
        if reduction == 'mean':
            return rows.mean()
        if reduction == 'sum':
            return rows.sum()
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    pos = (query * positive).sum(1, keepdim=True)
    logits = torch.cat([pos, query @ negatives.t()], dim=1) / t
    target = torch.zeros(n, dtype=torch.long, device=query.device)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return F.cross_entropy(logits, target, reduction=reduction)
