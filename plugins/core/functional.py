"""Distillation maths shared by the plugins, on plain tensors.

Nothing here imports a host library. Every function is dims-agnostic where the
maths is: the class (or bin) axis is an argument.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['temperature_kl', 'info_nce', 'check_temperature']


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
        teacher (Tensor): Teacher logits, same shape as ``student``.
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
    if student.shape != teacher.shape:
        raise ValueError(f'student logits {tuple(student.shape)} and teacher '
                         f'logits {tuple(teacher.shape)} differ in shape')
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


def info_nce(query: Tensor,
             positive: Tensor,
             negatives: Optional[Tensor] = None,
             temperature: float = 0.07,
             normalize: bool = False) -> Tensor:
    """InfoNCE (softmax cross-entropy over similarities) per query row.

    Two layouts:

    * ``negatives=None`` (in-batch): logits ``ℓ_ij = ⟨q_i, p_j⟩ / τ`` for all
      pairs and the target of row ``i`` is ``j = i``; the other rows of
      ``positive`` are the negatives. ``positive`` may have more rows than
      ``query`` (extra rows act as negatives only).
    * ``negatives`` given (shared bank): logits
      ``[⟨q_i, p_i⟩, ⟨q_i, n_1⟩, …, ⟨q_i, n_M⟩] / τ`` with the target at 0.

    Args:
        query (Tensor): ``(N, D)``.
        positive (Tensor): ``(N, D)``, or ``(M ≥ N, D)`` in-batch.
        negatives (Tensor, optional): ``(M, D)`` shared negatives.
        temperature (float): ``τ > 0``.
        normalize (bool): L2-normalise every row first (cosine similarity).

    Returns:
        Tensor: ``(N,)`` per-row loss (empty when ``N = 0``).

    Raises:
        ValueError: On non-2D inputs, mismatched feature sizes or row counts,
            or a bad temperature.
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
        logits = query @ positive.t() / t
        target = torch.arange(n, device=query.device)
    else:
        pos = (query * positive).sum(1, keepdim=True)
        logits = torch.cat([pos, query @ negatives.t()], dim=1) / t
        target = torch.zeros(n, dtype=torch.long, device=query.device)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return F.cross_entropy(logits, target, reduction='none')
