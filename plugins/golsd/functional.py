"""FDR and GO-LSD maths (D-FINE) on plain tensors; no mmdet import.

Conventions (see docs/golsd.md):

* ``R = reg_max`` (even, ≥ 4): every box edge has ``R + 1`` bins ``n = 0..R``.
* ``c = reg_scale``, ``a = up`` (0.5): fixed scalars.
* Corner logits are **edge-major**: ``Z.view(..., 4, R + 1)``, edges in the order
  left, top, right, bottom.
* Boxes are normalised ``cxcywh``; ground truth for targets is ``xyxy``.
* Index triples ``(b, q, g)`` name image ``b``, query ``q`` and ground truth ``g``
  (index into that image's boxes).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from plugins.core.functional import (check_temperature, fused_kl_backward, fused_kl_forward,
                                     temperature_kl, temperature_kl_last, tempered_teacher)

__all__ = [
    'weighting_function', 'distribution_integral', 'decode_corners', 'box_to_distance',
    'two_bin_targets', 'cxcywh_to_xyxy', 'aligned_iou', 'go_union', 'fgl_loss', 'ddf_loss',
    'fgl_loss_layers', 'ddf_loss_layers', 'fdr_layer_losses', 'check_reg_max', 'stack_matches',
    'lqe_statistics', 'fgl_pair_losses', 'ddf_distribution_losses', 'fdr_weights'
]


def check_reg_max(reg_max: int) -> int:
    """Validate ``reg_max``.

    Raises:
        ValueError: If it is not an even integer ≥ 4.
    """
    if int(reg_max) != reg_max or reg_max < 4 or reg_max % 2:
        raise ValueError(f'reg_max must be an even integer >= 4, got {reg_max!r}')
    return int(reg_max)


def weighting_function(reg_max: int = 32,
                       reg_scale: float = 4.0,
                       up: float = 0.5,
                       dtype: torch.dtype = torch.float64,
                       device: Optional[torch.device] = None) -> Tensor:
    """The non-uniform bin grid ``W(n)``, ``n = 0..R`` (§2.1).

    With ``N = R`` and ``s = (a·c + 1)^(2/(N−2))``: ``W(0) = −2ac``,
    ``W(n) = 1 − s^(N/2 − n)`` for ``1 ≤ n < N/2``, ``W(N/2) = 0``,
    ``W(n) = s^(n − N/2) − 1`` for ``N/2 < n ≤ N − 1``, ``W(N) = 2ac``.
    Computed in float64, then cast.

    Args:
        reg_max (int): ``R``, even and ≥ 4.
        reg_scale (float): ``c > 0``.
        up (float): ``a > 0``.
        dtype (torch.dtype): Output dtype.
        device (torch.device, optional): Output device.

    Returns:
        Tensor: ``(R + 1,)``, strictly increasing and antisymmetric.

    Raises:
        ValueError: On a bad ``reg_max``, ``reg_scale`` or ``up``.
    """
    n_max = check_reg_max(reg_max)
    if not (reg_scale > 0 and math.isfinite(reg_scale)):
        raise ValueError(f'reg_scale must be a finite number > 0, got {reg_scale!r}')
    if not (up > 0 and math.isfinite(up)):
        raise ValueError(f'up must be a finite number > 0, got {up!r}')
    ac = float(up) * float(reg_scale)
    half = n_max // 2
    s = (ac + 1.0)**(2.0 / (n_max - 2))
    n = torch.arange(n_max + 1, dtype=torch.float64)
    left = 1.0 - s**(half - n)
    right = s**(n - half) - 1.0
    w = torch.where(n < half, left, right)
    w[half] = 0.0
    w[0] = -2.0 * ac
    w[n_max] = 2.0 * ac
    return w.to(dtype=dtype, device=device)


def _edges(corners: Tensor, n_bins: int) -> Tensor:
    if corners.shape[-1] != 4 * n_bins:
        raise ValueError(f'corner logits end in {corners.shape[-1]} values; '
                         f'4 edges x {n_bins} bins = {4 * n_bins} expected')
    return corners.reshape(*corners.shape[:-1], 4, n_bins)


def distribution_integral(corners: Tensor, project: Tensor) -> Tensor:
    """Expected offset per edge: ``d_k = Σ_n softmax(Z_k)_n · W(n)``.

    Args:
        corners (Tensor): ``(*, 4(R+1))`` edge-major logits.
        project (Tensor): ``W``, shape ``(R+1,)``.

    Returns:
        Tensor: ``(*, 4)`` offsets in units of ``anchor size / c``.
    """
    z = _edges(corners, project.numel())
    return torch.softmax(z, dim=-1) @ project.to(z.dtype)


def decode_corners(anchors: Tensor, distances: Tensor, reg_scale: float) -> Tensor:
    """Anchor boxes moved by per-edge offsets, no clamping (§2.2).

    ``x1 = cx − (w/c)(c/2 + d_l)``, ``y1 = cy − (h/c)(c/2 + d_t)``,
    ``x2 = cx + (w/c)(c/2 + d_r)``, ``y2 = cy + (h/c)(c/2 + d_b)``.

    Args:
        anchors (Tensor): ``(*, 4)`` cxcywh.
        distances (Tensor): ``(*, 4)`` offsets ``(d_l, d_t, d_r, d_b)``.
        reg_scale (float): ``c``.

    Returns:
        Tensor: ``(*, 4)`` cxcywh; ``distances = 0`` gives ``anchors``. Widths
        can be negative when ``d_l + d_r < −c``.
    """
    c = float(reg_scale)
    cx, cy, w, h = anchors.unbind(-1)
    dl, dt, dr, db = distances.unbind(-1)
    x1 = cx - w / c * (c / 2 + dl)
    y1 = cy - h / c * (c / 2 + dt)
    x2 = cx + w / c * (c / 2 + dr)
    y2 = cy + h / c * (c / 2 + db)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], -1)


def box_to_distance(anchors: Tensor,
                    gt_xyxy: Tensor,
                    reg_scale: float,
                    eps: float = 1e-16) -> Tensor:
    """Inverse of :func:`decode_corners` for targets: ``φ`` per edge.

    ``φ_l = (cx − x1)/(w/c) − c/2``, ``φ_t = (cy − y1)/(h/c) − c/2``,
    ``φ_r = (x2 − cx)/(w/c) − c/2``, ``φ_b = (y2 − cy)/(h/c) − c/2``, with
    ``eps`` added to ``w/c`` and ``h/c`` as the reference does.

    Args:
        anchors (Tensor): ``(*, 4)`` cxcywh.
        gt_xyxy (Tensor): ``(*, 4)`` xyxy.
        reg_scale (float): ``c``.

    Returns:
        Tensor: ``(*, 4)``.
    """
    c = float(reg_scale)
    cx, cy, w, h = anchors.unbind(-1)
    x1, y1, x2, y2 = gt_xyxy.unbind(-1)
    sw = w / c + eps
    sh = h / c + eps
    return torch.stack([(cx - x1) / sw - c / 2, (cy - y1) / sh - c / 2, (x2 - cx) / sw - c / 2,
                        (y2 - cy) / sh - c / 2], -1)


def two_bin_targets(phi: Tensor, project: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Split each offset ``φ`` between its two neighbouring bins (§3.1).

    ``n_← = #{n : W(n) ≤ φ} − 1``. In range (``0 ≤ n_← ≤ R−1``) the weights
    interpolate linearly, so ``ω_← W(n_←) + ω_→ W(n_←+1) = φ``. Below ``W(0)``
    all mass is on bin 0 (``n_← = 0, ω_← = 1``); at or above ``W(R)`` all mass
    is on bin ``R`` (``n_← = R−1, ω_→ = 1``).

    Args:
        phi (Tensor): ``(*)`` offsets.
        project (Tensor): ``W``, ``(R+1,)``.

    Returns:
        tuple: ``(n_left (*) long, w_left (*), w_right (*))``. A NaN ``φ``
        gives NaN weights (so the loss is NaN and the step is skipped), never
        a silent target on bin 0.
    """
    w = project.to(phi.dtype)
    r = w.numel() - 1
    count = (w <= phi.unsqueeze(-1)).sum(-1)
    left = count - 1
    below = left < 0
    above = left >= r
    idx = left.clamp(0, r - 1)
    d_left = (phi - w[idx]).abs()
    d_right = (w[idx + 1] - phi).abs()
    w_right = d_left / (d_left + d_right)
    w_right = torch.where(below, torch.zeros_like(w_right), w_right)
    w_right = torch.where(above, torch.ones_like(w_right), w_right)
    w_right = torch.where(torch.isnan(phi), phi, w_right)
    return idx, 1.0 - w_right, w_right


def cxcywh_to_xyxy(boxes: Tensor, clamp_size: bool = True) -> Tensor:
    """cxcywh → xyxy; widths and heights clamped at 0 first (as the reference)."""
    cx, cy, w, h = boxes.unbind(-1)
    if clamp_size:
        w = w.clamp(min=0)
        h = h.clamp(min=0)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def aligned_iou(a_xyxy: Tensor, b_xyxy: Tensor, eps: float = 1e-12) -> Tensor:
    """IoU of row-aligned box pairs; the union is clamped at ``eps``.

    Args:
        a_xyxy (Tensor): ``(*, 4)``.
        b_xyxy (Tensor): ``(*, 4)``.

    Returns:
        Tensor: ``(*)`` in [0, 1]; degenerate pairs give 0, never NaN.
    """
    lt = torch.maximum(a_xyxy[..., :2], b_xyxy[..., :2])
    rb = torch.minimum(a_xyxy[..., 2:], b_xyxy[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a_xyxy[..., 2:] - a_xyxy[..., :2]).clamp(min=0).prod(-1)
    area_b = (b_xyxy[..., 2:] - b_xyxy[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter).clamp(min=eps)


def go_union(matches: Sequence[Tuple[Tensor, Tensor, Tensor]]) -> Tuple[Tensor, Tensor, Tensor]:
    """The GO union of several one-to-one matchings (§5), vectorised.

    Every ``(b, q, g)`` triple of every set is one vote. Each ``(b, q)`` keeps
    the ``g`` with the most votes; ties go to the smallest ``g``.

    Args:
        matches (Sequence[tuple]): One ``(batch_idx, query_idx, gt_idx)`` triple
            of equal-length 1-D long tensors per prediction set.

    Returns:
        tuple: ``(batch_idx, query_idx, gt_idx)`` sorted by ``(b, q)``; each
        ``(b, q)`` at most once; a ``g`` may repeat (one-to-many).

    Raises:
        ValueError: If the three tensors of a set differ in length.
    """
    bs, qs, gs = [], [], []
    for k, (b, q, g) in enumerate(matches):
        if not (b.numel() == q.numel() == g.numel()):
            raise ValueError(f'match set {k}: batch/query/gt index lengths differ '
                             f'({b.numel()}, {q.numel()}, {g.numel()})')
        bs.append(b.reshape(-1).long())
        qs.append(q.reshape(-1).long())
        gs.append(g.reshape(-1).long())
    if not bs or sum(t.numel() for t in bs) == 0:
        empty = torch.zeros(0, dtype=torch.long, device=bs[0].device if bs else None)
        return (empty, ) * 3
    b, q, g = torch.cat(bs), torch.cat(qs), torch.cat(gs)
    nq = int(q.max()) + 1
    ng = int(g.max()) + 1
    slot = b * nq + q
    key = slot * ng + g
    pairs, votes = torch.unique(key, return_counts=True)  # sorted by (slot, g)
    p_slot = torch.div(pairs, ng, rounding_mode='floor')
    p_g = pairs - p_slot * ng
    # most votes first, then smallest g: one unique score per (slot, g)
    score = votes * (ng + 1) + (ng - p_g)
    best = torch.full((int(p_slot.max()) + 1, ), -1, dtype=score.dtype, device=score.device)
    best = best.scatter_reduce(0, p_slot, score, reduce='amax')
    keep = score == best[p_slot]
    k_slot, k_g = p_slot[keep], p_g[keep]
    k_b = torch.div(k_slot, nq, rounding_mode='floor')
    return k_b, k_slot - k_b * nq, k_g


def fgl_loss(corners: Tensor,
             target_left: Tensor,
             weight_left: Tensor,
             weight_right: Tensor,
             iou: Tensor,
             avg_factor: float,
             check: bool = True) -> Tensor:
    """Fine-Grained Localization loss of one layer (§3.2).

    ``(1/N) Σ_{pairs} Σ_k u · [ω_← CE(Z_k, n_←) + ω_→ CE(Z_k, n_← + 1)]``,
    summed over the four edges (no ``/4``).

    Args:
        corners (Tensor): ``(M, 4(R+1))`` logits of the matched queries, in the
            order of the targets.
        target_left (Tensor): ``(M, 4)`` long, ``n_←``.
        weight_left (Tensor): ``(M, 4)``, ``ω_←``.
        weight_right (Tensor): ``(M, 4)``, ``ω_→``.
        iou (Tensor): ``(M,)`` IoU weights (detached here).
        avg_factor (float): ``N`` (e.g. ``N_GO``), clamped at ≥ 1.
        check (bool): Check that ``0 ≤ n_← ≤ R − 1`` (one device sync). The
            head skips it: its targets come from :func:`two_bin_targets`.

    Returns:
        Tensor: Scalar in float32 or float64; a graph-connected 0 when
        ``M = 0``.

    Raises:
        ValueError: On a row-count mismatch, or (``check``) a target bin
            outside ``[0, R − 1]``.
    """
    m = target_left.shape[0]
    n_bins = corners.shape[-1] // 4
    if corners.shape[0] != m:
        raise ValueError(f'{corners.shape[0]} corner rows for {m} targets')
    if check and m and target_left.numel():
        lo, hi = int(target_left.min()), int(target_left.max())
        if lo < 0 or hi > n_bins - 2:
            raise ValueError(f'fgl_loss: target_left must lie in [0, {n_bins - 2}] '
                             f'(R = {n_bins - 1} bins per edge), got values in [{lo}, {hi}]')
    if m == 0:
        return corners.sum() * 0
    return fgl_loss_layers(
        corners.unsqueeze(0), target_left, weight_left, weight_right, iou.reshape(1, m),
        avg_factor)[0]


def ddf_loss(student: Tensor,
             teacher: Tensor,
             matched_mask: Tensor,
             weights: Tensor,
             temperature: float = 5.0,
             counts: Optional[Tuple[float, float]] = None) -> Tensor:
    """Decoupled Distillation Focal loss of one student layer (§4).

    Per distribution ``e``: ``ℓ_e = w_e · T² · KL(p_t ‖ p_s)`` summed over
    bins, ``p = softmax(z / T)``, teacher detached. With ``μ_m``, ``μ_u`` the
    means of ``ℓ`` over matched and unmatched distributions (0 when empty):
    ``(√N_m μ_m + √N_u μ_u) / (√N_m + √N_u)``.

    Args:
        student (Tensor): ``(B, Q, 4(R+1))`` corner logits of the student layer.
        teacher (Tensor): Same shape, the last layer (detached here).
        matched_mask (Tensor): ``(B, Q)`` bool, queries in the GO set (or the
            DN positives); each covers 4 distributions.
        weights (Tensor): ``(B, Q)`` detached weights: IoU for matched queries,
            the teacher's max class confidence for the others.
        temperature (float): ``T``.
        counts (tuple, optional): ``(N_m, N_u)`` for the √ weights; default the
            counts of this call (``4·|matched|``, ``4BQ − N_m``). The DN pass
            passes those of the matching pass.

    Returns:
        Tensor: Scalar; a graph-connected 0 when ``student is teacher`` or
        there are no distributions.
    """
    if student is teacher or student.numel() == 0:
        return student.sum() * 0
    if student.shape != teacher.shape:
        raise ValueError(f'student {tuple(student.shape)} and teacher '
                         f'{tuple(teacher.shape)} corner logits differ in shape')
    if matched_mask.shape != student.shape[:-1] or weights.shape != student.shape[:-1]:
        raise ValueError(f'matched_mask {tuple(matched_mask.shape)} and weights '
                         f'{tuple(weights.shape)} must be {tuple(student.shape[:-1])}')
    return _ddf_from_kl(
        _edge_kl(student, teacher, temperature).unsqueeze(0), matched_mask, weights.unsqueeze(0),
        counts)[0]


def _edge_kl(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """``T² · KL(p_t ‖ p_s)`` per edge distribution, ``(..., 4(R+1))`` → ``(..., 4)``."""
    n_bins = student.shape[-1] // 4
    return temperature_kl(
        _edges(student, n_bins),
        _edges(teacher, n_bins),
        temperature,
        dim=-1,
        class_reduction='sum',
        detach_teacher=True)


def ddf_distribution_losses(student: Tensor,
                            teacher: Tensor,
                            weights: Tensor,
                            temperature: float = 5.0) -> Tensor:
    """The element-wise DDF terms ``ℓ_e = w_e · T² · KL(p_t ‖ p_s)``, before the
    decoupled mean of :func:`ddf_loss`.

    Args:
        student (Tensor): ``(B, Q, 4(R+1))`` corner logits of the student layer.
        teacher (Tensor): Same shape (detached here).
        weights (Tensor): ``(B, Q)`` detached weights, as :func:`ddf_loss`.
        temperature (float): ``T``.

    Returns:
        Tensor: ``(B, Q, 4)``, one term per edge distribution.

    Raises:
        ValueError: On mismatched shapes or a bad temperature.
    """
    if student.shape != teacher.shape or weights.shape != student.shape[:-1]:
        raise ValueError(f'student {tuple(student.shape)}, teacher {tuple(teacher.shape)} and '
                         f'weights {tuple(weights.shape)} must be (B, Q, 4(R+1)) twice and (B, Q)')
    kl = _edge_kl(student, teacher, temperature)
    return kl * weights.detach().to(kl.dtype).unsqueeze(-1)


def fgl_pair_losses(corners: Tensor, target_left: Tensor, weight_left: Tensor,
                    weight_right: Tensor) -> Tensor:
    """The element-wise FGL terms before the IoU weight and the normaliser:
    ``Σ_k [ω_← CE(Z_k, n_←) + ω_→ CE(Z_k, n_← + 1)]`` per matched pair.

    :func:`fgl_loss` is ``(Σ_pairs u · fgl_pair_losses) / N``.

    Args:
        corners (Tensor): ``(M, 4(R+1))`` logits of the matched queries.
        target_left, weight_left, weight_right (Tensor): ``(M, 4)``, as :func:`fgl_loss`.

    Returns:
        Tensor: ``(M,)`` (float32 for half-precision logits).

    Raises:
        ValueError: On a row-count mismatch.
    """
    if corners.dim() != 2 or corners.shape[0] != target_left.shape[0]:
        raise ValueError(f'corners must be (M, 4(R+1)) with M = {target_left.shape[0]} '
                         f'targets, got {tuple(corners.shape)}')
    ce = _two_bin_ce(corners, target_left)  # (M, 4, 2)
    w = torch.stack([weight_left, weight_right], -1).to(ce.dtype)
    return (ce * w).sum((-1, -2))


def _two_bin_ce(corners: Tensor, target_left: Tensor) -> Tensor:
    """``CE(Z_k, n_←)`` and ``CE(Z_k, n_← + 1)`` per edge: ``(..., M, 4(R+1))`` →
    ``(..., M, 4, 2)``, in float32 for half-precision logits."""
    z = _edges(corners, corners.shape[-1] // 4)
    if z.dtype in (torch.float16, torch.bfloat16):
        z = z.float()
    return -F.log_softmax(z, dim=-1).gather(-1, _two_bins(target_left, z.shape))


def _fgl_from_ce(ce: Tensor, weight_left: Tensor, weight_right: Tensor, iou: Tensor,
                 avg_factor: float) -> Tensor:
    """``(L,)`` FGL from the two-bin cross-entropies ``ce (L, M, 4, 2)``."""
    w = torch.stack([weight_left, weight_right], -1).to(ce.dtype)  # (M, 4, 2)
    per_edge = (ce * w).sum(-1) * iou.detach().to(ce.dtype).unsqueeze(-1)  # (L, M, 4)
    return per_edge.sum((1, 2)) / max(float(avg_factor), 1.0)


def _two_bins(target_left: Tensor, shape) -> Tensor:
    """``(L, M, 4, 2)`` indices ``n_←, n_← + 1`` for a gather over bins."""
    tl = target_left.long().unsqueeze(-1)
    return torch.cat([tl, tl + 1], -1).expand(*shape[:-1], 2)


def _check_fgl_shapes(corners: Tensor, target_left: Tensor, iou: Tensor) -> None:
    if corners.dim() != 3 or corners.shape[1] != target_left.shape[0]:
        raise ValueError(f'corners must be (L, M, 4(R+1)) with M = {target_left.shape[0]} '
                         f'targets, got {tuple(corners.shape)}')
    if iou.shape != corners.shape[:2]:
        raise ValueError(f'iou must be (L, M) = {tuple(corners.shape[:2])}, '
                         f'got {tuple(iou.shape)}')


def fgl_loss_layers(corners: Tensor, target_left: Tensor, weight_left: Tensor, weight_right: Tensor,
                    iou: Tensor, avg_factor: float) -> Tensor:
    """:func:`fgl_loss` of every decoder layer in one computation.

    The layers share the matched pairs and their two-bin targets (they come
    from the common anchor); each layer has its own logits and IoU weights.

    Args:
        corners (Tensor): ``(L, M, 4(R+1))`` logits of the matched queries per layer.
        target_left, weight_left, weight_right (Tensor): ``(M, 4)``, as :func:`fgl_loss`.
        iou (Tensor): ``(L, M)`` IoU weights per layer (detached here).
        avg_factor (float): ``N``, clamped at ≥ 1.

    Returns:
        Tensor: ``(L,)``; entry ``i`` equals ``fgl_loss(corners[i], ..., iou[i], N)``
        (graph-connected zeros when ``M = 0``).

    Raises:
        ValueError: On a row-count or layer-count mismatch.
    """
    _check_fgl_shapes(corners, target_left, iou)
    if corners.shape[1] == 0:
        return corners.sum((1, 2)) * 0
    return _fgl_from_ce(
        _two_bin_ce(corners, target_left), weight_left, weight_right, iou, avg_factor)


def ddf_loss_layers(students: Tensor,
                    teacher: Tensor,
                    matched_mask: Tensor,
                    weights: Tensor,
                    temperature: float = 5.0,
                    counts: Optional[Tuple[float, float]] = None,
                    num_students: Optional[int] = None) -> Tensor:
    """:func:`ddf_loss` of several student layers against one teacher at once.

    The teacher's tempered softmax is computed once and broadcast; the
    matched/unmatched means are masked sums, so the layers need no loop.

    Args:
        students (Tensor): ``(S, B, Q, 4(R+1))`` corner logits of the student layers.
        teacher (Tensor): ``(B, Q, 4(R+1))``, the last layer (detached here).
        matched_mask (Tensor): ``(B, Q)`` bool, shared by the students.
        weights (Tensor): ``(S', B, Q)`` detached weights per student layer.
        temperature (float): ``T``.
        counts (tuple, optional): ``(N_m, N_u)``, as :func:`ddf_loss`.
        num_students (int, optional): ``S'``: only ``students[:S']`` are
            students (pass the whole stack with ``S' = L − 1``: its gradient
            is then written in one buffer, without slicing).

    Returns:
        Tensor: ``(S',)``; entry ``i`` equals ``ddf_loss(students[i], teacher,
        matched_mask, weights[i], T, counts)``.

    Raises:
        ValueError: On mismatched shapes.
    """
    n = students.shape[0] if num_students is None else int(num_students)
    if students.dim() != 4 or students.shape[1:] != teacher.shape:
        raise ValueError(f'students {tuple(students.shape)} must be (S, *teacher.shape) with '
                         f'teacher {tuple(teacher.shape)}')
    if matched_mask.shape != teacher.shape[:-1] or weights.shape != (n, *students.shape[1:-1]):
        raise ValueError(f'matched_mask {tuple(matched_mask.shape)} must be '
                         f'{tuple(teacher.shape[:-1])} and weights {tuple(weights.shape)} '
                         f'{(n, *students.shape[1:-1])}')
    if students.numel() == 0 or n == 0:
        return students[:n].sum(tuple(range(1, students.dim()))) * 0
    n_bins = students.shape[-1] // 4
    kl = temperature_kl_last(
        _edges(students, n_bins), _edges(teacher, n_bins).unsqueeze(0), temperature,
        num_students=n)  # (S', B, Q, 4)
    return _ddf_from_kl(kl, matched_mask, weights, counts)


def _ddf_from_kl(kl: Tensor, matched_mask: Tensor, weights: Tensor,
                 counts: Optional[Tuple[float, float]]) -> Tensor:
    """``(S,)`` DDF from the per-distribution KL ``(S, B, Q, 4)``."""
    loss = kl * weights.detach().to(kl.dtype).unsqueeze(-1)
    mask = matched_mask.bool().unsqueeze(-1).expand(loss.shape[1:])  # (B, Q, 4)
    n_m_here = int(mask.sum())
    n_u_here = mask.numel() - n_m_here
    zero = loss.new_zeros(())
    sum_m = torch.where(mask, loss, zero).sum((1, 2, 3))
    sum_u = torch.where(mask, zero, loss).sum((1, 2, 3))
    mu_m = sum_m / n_m_here if n_m_here else sum_m * 0
    mu_u = sum_u / n_u_here if n_u_here else sum_u * 0
    n_m, n_u = (n_m_here, n_u_here) if counts is None else counts
    rm, ru = math.sqrt(max(n_m, 0)), math.sqrt(max(n_u, 0))
    if rm + ru == 0:
        return loss.sum((1, 2, 3)) * 0
    return (rm * mu_m + ru * mu_u) / (rm + ru)


class _FDRStack(torch.autograd.Function):
    """Both FDR terms' per-element pieces from one pass over the stacked logits.

    Forward: the two-bin cross-entropies of the matched rows of every layer
    ``(L, M, 4, 2)`` and the KL of layers ``0..L−2`` against the last
    ``(L−1, B, Q, 4)``. Backward: one gradient buffer for the whole stack, the
    KL part written in place and the rows' part added at their indices (no
    zero-filled stack per use, no sum of full-size gradients).
    """

    @staticmethod
    def forward(ctx, corners: Tensor, batch_idx: Tensor, query_idx: Tensor, two_bins: Tensor,
                p_t: Tensor, neg_entropy: Tensor, t: float):
        num_layers = corners.shape[0]
        z = _edges(corners, corners.shape[-1] // 4)  # (L, B, Q, 4, R+1)
        kl, q = fused_kl_forward(z[:num_layers - 1], p_t, neg_entropy, t)
        logp_rows = F.log_softmax(z[:, batch_idx, query_idx], dim=-1)  # (L, M, 4, R+1)
        ce = -logp_rows.gather(-1, two_bins)
        ctx.save_for_backward(q, p_t, logp_rows, batch_idx, query_idx, two_bins)
        ctx.t, ctx.shape = t, z.shape
        return ce, kl

    @staticmethod
    def backward(ctx, grad_ce: Optional[Tensor], grad_kl: Optional[Tensor]):
        q, p_t, logp_rows, b, qi, two_bins = ctx.saved_tensors
        s = q.shape[0]
        out = q.new_empty(ctx.shape)
        if grad_kl is not None:
            fused_kl_backward(q, p_t, grad_kl, ctx.t, out[:s])
        else:
            out[:s].zero_()
        out[s:].zero_()
        if grad_ce is not None and b.numel():
            rows = logp_rows.exp().mul_(grad_ce.sum(-1, keepdim=True))
            rows.scatter_add_(-1, two_bins, -grad_ce)
            layers = torch.arange(out.shape[0], device=out.device).unsqueeze(1)
            out.index_put_((layers, b.unsqueeze(0), qi.unsqueeze(0)), rows, accumulate=True)
        return out.flatten(-2), None, None, None, None, None, None


def fdr_weights(boxes: Tensor, confidence: Tensor, batch_idx: Tensor, query_idx: Tensor,
                gt_xyxy: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """The detached weights of FGL and DDF for every layer.

    Args:
        boxes (Tensor): ``(L, B, Q, 4)`` cxcywh boxes of every layer.
        confidence (Tensor): ``(B, Q)`` the last layer's max class probability.
        batch_idx, query_idx (Tensor): ``(M,)`` the matched queries.
        gt_xyxy (Tensor): ``(M, 4)`` their ground truth.

    Returns:
        tuple: ``iou (L, M)`` float32, the FGL weights (IoU of each layer's
        box with its ground truth); ``matched (B, Q)`` bool; ``weights
        (L−1, B, Q)``, the DDF weights of the student layers (IoU where
        matched, ``confidence`` elsewhere).
    """
    num_layers = boxes.shape[0]
    with torch.no_grad():
        iou = aligned_iou(
            cxcywh_to_xyxy(boxes[:, batch_idx, query_idx].detach().float()),
            gt_xyxy.float().unsqueeze(0))  # (L, M)
    matched = torch.zeros(confidence.shape, dtype=torch.bool, device=confidence.device)
    matched[batch_idx, query_idx] = True
    weights = confidence.detach().expand(num_layers - 1, *confidence.shape).clone()
    weights[:, batch_idx, query_idx] = iou[:-1].to(weights.dtype)
    return iou, matched, weights


def fdr_layer_losses(corners: Tensor,
                     boxes: Tensor,
                     confidence: Tensor,
                     batch_idx: Tensor,
                     query_idx: Tensor,
                     gt_xyxy: Tensor,
                     targets: Tuple[Tensor, Tensor, Tensor],
                     avg_factor: float,
                     counts: Optional[Tuple[float, float]] = None,
                     temperature: float = 5.0) -> Tuple[Tensor, Tensor]:
    """FGL of every layer and DDF of layers ``0..L−2`` against the last, batched.

    One pass over the stacked logits: the matched rows of all layers are
    gathered once, the IoU weights of all layers come from one call, and the
    teacher's softmax is computed once.

    Args:
        corners (Tensor): ``(L, B, Q, 4(R+1))`` corner logits of every layer.
        boxes (Tensor): ``(L, B, Q, 4)`` cxcywh boxes decoded from them.
        confidence (Tensor): ``(B, Q)`` the last layer's max class probability
            (the DDF weight of unmatched queries).
        batch_idx, query_idx (Tensor): ``(M,)`` the matched queries (e.g. the GO union).
        gt_xyxy (Tensor): ``(M, 4)`` xyxy ground truth of the matched pairs.
        targets (tuple): ``(n_←, ω_←, ω_→)`` of the matched pairs, each ``(M, 4)``.
        avg_factor (float): FGL's ``N``.
        counts (tuple, optional): DDF's ``(N_m, N_u)`` (default: this call's).
        temperature (float): DDF's ``T``.

    Returns:
        tuple: ``(fgl (L,), ddf (L−1,))``; entry ``i`` equals :func:`fgl_loss` /
        :func:`ddf_loss` of layer ``i`` with IoU weights from ``boxes[i]``.

    Raises:
        ValueError: On inconsistent shapes.
    """
    num_layers = corners.shape[0]
    if boxes.shape[:-1] != corners.shape[:-1] or confidence.shape != corners.shape[1:3]:
        raise ValueError(f'boxes {tuple(boxes.shape)} and confidence {tuple(confidence.shape)} '
                         f'must match corners {tuple(corners.shape)} as (L, B, Q, 4) and (B, Q)')
    iou, matched, weights = fdr_weights(boxes, confidence, batch_idx, query_idx, gt_xyxy)
    target_left, weight_left, weight_right = targets
    if num_layers < 2 or corners.dtype in (torch.float16, torch.bfloat16):
        # unfused: one layer (no students), or half precision (computed in float32)
        fgl = fgl_loss_layers(corners[:, batch_idx, query_idx], target_left, weight_left,
                              weight_right, iou, avg_factor)
        if num_layers < 2:
            return fgl, corners.new_zeros(0)
        return fgl, ddf_loss_layers(
            corners.float(),
            corners[-1].float(),
            matched,
            weights,
            temperature,
            counts,
            num_students=num_layers - 1)
    t = check_temperature(temperature)
    n_bins = corners.shape[-1] // 4
    p_t, neg_entropy = tempered_teacher(_edges(corners[-1], n_bins).unsqueeze(0), t)
    two_bins = _two_bins(target_left, (num_layers, batch_idx.numel(), 4, n_bins))
    ce, kl = _FDRStack.apply(corners, batch_idx, query_idx, two_bins, p_t, neg_entropy, t)
    fgl = _fgl_from_ce(ce, weight_left, weight_right, iou, avg_factor)
    return fgl, _ddf_from_kl(kl, matched, weights, counts)


def stack_matches(per_image: List[Tuple[Tensor, Tensor]],
                  device: Optional[torch.device] = None) -> Tuple[Tensor, Tensor, Tensor]:
    """Per-image ``(query_idx, gt_idx)`` pairs → one ``(b, q, g)`` triple.

    Args:
        per_image (list): ``(q (M_b,), g (M_b,))`` for image ``b = 0, 1, ...``
            (empty tensors for an image without matches).
        device (torch.device, optional): Where the empty triple of an empty
            list lives (default CPU).
    """
    bs, qs, gs = [], [], []
    for b, (q, g) in enumerate(per_image):
        q = q.reshape(-1).long()
        bs.append(torch.full_like(q, b))
        qs.append(q)
        gs.append(g.reshape(-1).long())
    if not bs:
        e = torch.zeros(0, dtype=torch.long, device=device)
        return e, e, e
    return torch.cat(bs), torch.cat(qs), torch.cat(gs)


def lqe_statistics(corners: Tensor, k: int = 4) -> Tensor:
    """What the optional location-quality term reads from the corner logits:
    per edge, the ``k`` largest bin probabilities and their mean.

    Args:
        corners (Tensor): ``(..., 4·(R+1))`` logits, edges in order.
        k (int): Top bins per edge (4), at most ``R + 1``.

    Returns:
        Tensor: ``(..., 4·(k+1))`` float32, per edge ``[p_(1) … p_(k), mean]``.

    Raises:
        ValueError: If the last axis is not 4 edges or ``k`` is out of range.
    """
    bins = corners.shape[-1] // 4
    if corners.shape[-1] != 4 * bins or bins == 0:
        raise ValueError(f'corner logits need 4·(R+1) entries on the last axis, got '
                         f'{corners.shape[-1]}')
    if not 1 <= k <= bins:
        raise ValueError(f'k must be in 1..{bins} (bins per edge), got {k}')
    prob = corners.float().reshape(*corners.shape[:-1], 4, bins).softmax(-1)
    top = prob.topk(k, dim=-1).values
    return torch.cat([top, top.mean(-1, keepdim=True)], -1).flatten(-2)
