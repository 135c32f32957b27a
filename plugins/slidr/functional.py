"""SLidR's maths on plain tensors: superpixel slots, pooling of points and
pixels into them, and the superpixel-driven contrastive loss (arXiv:2203.16258,
Eq. 1–3). Geometry lives in :mod:`plugins.slidr.geometry`, the downstream
segmentation loss and metrics in :mod:`plugins.slidr.metrics`.

Shapes: ``N`` points, ``V`` voxels (3D rows), ``P`` point–pixel pairings,
``n`` images of ``H×W``, ``S`` superpixel slots per image, ``D`` features.
"""
from __future__ import annotations

import warnings
from typing import Optional, Tuple

import torch
from torch import Tensor

from plugins.core.functional import check_temperature, info_nce
from plugins.slidr.run_sums import run_sums_accept, run_sums_available, slot_run_sums

__all__ = ['superpixel_slots', 'pool_points', 'pool_pixels', 'kept_slots', 'superpixel_nce']

_EPS = 1e-6


# ------------------------------------------------------------------ pooling
def superpixel_slots(superpixels: Tensor,
                     stride: int = 150,
                     on_overflow: str = 'error') -> Tuple[Tensor, int]:
    """Global slot map ``σ = n·S + s`` of per-image superpixel ids.

    Args:
        superpixels (Tensor): ``(n, H, W)`` integer ids per image.
        stride (int): ``S``, slots per image.
        on_overflow (str): ``'error'`` if an id ≥ S (it would alias a
            superpixel of the next image), or ``'offsets'``: cumulative
            per-image offsets of ``max_id + 1`` (slot numbers change, the loss
            does not).

    Returns:
        tuple: ``(slots (n, H, W) long, number of slots)``.

    Raises:
        TypeError: On floating-point ids (truncating them would merge
            superpixels); cast label maps to an integer type when reading them.
        ValueError: On negative ids, a bad mode, or an overflow in ``'error'``
            mode (names the image and its largest id).
    """
    if superpixels.dim() != 3:
        raise ValueError(f'superpixels must be (n, H, W), got {tuple(superpixels.shape)}')
    if superpixels.is_floating_point() or superpixels.is_complex():
        raise TypeError(f'superpixel ids must be integers, got {superpixels.dtype}: '
                        f'float ids would be truncated and merge superpixels')
    ids = superpixels.long()
    n = ids.shape[0]
    if n == 0:
        return ids, 0
    if bool((ids < 0).any()):
        raise ValueError('superpixel ids must be >= 0')
    top = ids.flatten(1).amax(1)
    if on_overflow == 'error':
        bad = torch.nonzero(top >= stride)[:, 0].tolist()
        if bad:
            raise ValueError(f'superpixel ids reach {int(top[bad[0]])} in image {bad[0]} but '
                             f'only {stride} slots per image are reserved (superpixel_size); '
                             f"raise it or use on_overflow='offsets'")
        offsets = torch.arange(n, device=ids.device) * stride
        return ids + offsets[:, None, None], n * stride
    if on_overflow == 'offsets':
        widths = top + 1
        offsets = torch.cumsum(widths, 0) - widths
        return ids + offsets[:, None, None], int(widths.sum())
    raise ValueError(f"on_overflow must be 'error' or 'offsets', got {on_overflow!r}")


def _accumulation_dtype(x: Tensor) -> torch.dtype:
    """float32 for half-precision inputs (sums of many bf16 rows lose digits),
    else the input's own dtype."""
    return torch.promote_types(x.dtype, torch.float32)


def pool_points(features: Tensor, pair_rows: Tensor, pair_slots: Tensor,
                num_slots: int) -> Tuple[Tensor, Tensor]:
    """``k_σ = Σ_{pairings j in σ} f_{v_j} / (m_σ + 1e-6)``, counted per pairing.

    Args:
        features (Tensor): ``(V, D)`` 3D features.
        pair_rows (Tensor): ``(P,)`` 3D row of each pairing.
        pair_slots (Tensor): ``(P,)`` slot of each pairing's pixel.
        num_slots (int): Number of slots.

    Returns:
        tuple: ``k (num_slots, D)``, ``m (num_slots,)`` pairing counts; summed
        and returned in float32 for float16/bfloat16 features.

    Raises:
        ValueError: On mismatched pairings or out-of-range indices.
    """
    if pair_rows.shape != pair_slots.shape or pair_rows.dim() != 1:
        raise ValueError(f'pairing rows {tuple(pair_rows.shape)} and slots '
                         f'{tuple(pair_slots.shape)} must be matching 1-D tensors')
    if pair_rows.numel():
        if int(pair_rows.min()) < 0 or int(pair_rows.max()) >= features.shape[0]:
            raise ValueError(f'pairings reference 3D rows outside [0, {features.shape[0]})')
        if int(pair_slots.min()) < 0 or int(pair_slots.max()) >= num_slots:
            raise ValueError(f'pairings reference slots outside [0, {num_slots})')
    acc = _accumulation_dtype(features)
    pooled = features.new_zeros(num_slots, features.shape[1], dtype=acc)
    pooled = pooled.index_add(0, pair_slots, features.index_select(0, pair_rows).to(acc))
    counts = torch.bincount(pair_slots, minlength=num_slots).to(acc)
    return pooled / (counts[:, None] + _EPS), counts


class _LocalSlotSum(torch.autograd.Function):
    """``part[i, :, s] = Σ_{p : local[i, p] = s} feats[i, :, p]`` per image, in the
    ``(n, D, P)`` layout: on a CPU by runs of equal slots (compiled,
    :mod:`plugins.slidr.run_sums`), else one ``index_add_`` per image; the
    gradient is one gather per image into one buffer."""

    @staticmethod
    def forward(ctx, feats: Tensor, local: Tensor, span: int) -> Tensor:
        n, d, _ = feats.shape
        use_kernel = run_sums_accept(feats) and run_sums_available()
        part = slot_run_sums(feats, local, span) if use_kernel else None
        if part is None:
            part = feats.new_zeros(n, d, span)
            for i in range(n):
                part[i].index_add_(1, local[i], feats[i])
        ctx.save_for_backward(local)
        ctx.shape = feats.shape
        return part

    @staticmethod
    def backward(ctx, grad: Tensor):
        local, = ctx.saved_tensors
        grad = grad.contiguous()  # small: (n, D, span)
        out = grad.new_empty(ctx.shape)
        for i in range(out.shape[0]):
            torch.index_select(grad[i], 1, local[i], out=out[i])
        return out, None, None


def pool_pixels(pixel_features: Tensor, slots: Tensor, num_slots: int) -> Tuple[Tensor, Tensor]:
    """``q_σ = Σ_{pixels of σ} g / (a_σ + 1e-6)`` over every pixel of the slot.

    Args:
        pixel_features (Tensor): ``(n, D, H, W)``.
        slots (Tensor): ``(n, H, W)`` slot map (:func:`superpixel_slots`).
        num_slots (int): Number of slots.

    Returns:
        tuple: ``q (num_slots, D)``, ``a (num_slots,)`` pixel counts; summed
        and returned in float32 for float16/bfloat16 features.

    Raises:
        ValueError: If the slot map does not match the feature maps.
    """
    n, d, h, w = pixel_features.shape
    if tuple(slots.shape) != (n, h, w):
        raise ValueError(f'slot map {tuple(slots.shape)} does not match pixel features '
                         f'{tuple(pixel_features.shape)} (expected ({n}, {h}, {w}))')
    acc = _accumulation_dtype(pixel_features)
    index = slots.reshape(n, h * w)
    counts = torch.bincount(index.reshape(-1), minlength=num_slots).to(acc)
    pooled = pixel_features.new_zeros(num_slots, d, dtype=acc)
    if n == 0 or h * w == 0:
        return pooled, counts
    # Pool in the features' own (n, D, H·W) layout: each image's slots form a
    # short local range, summed along the contiguous pixel axis (no
    # channels-last copy of the map, forward or backward).
    lo, hi = index.amin(1), index.amax(1)
    span = int((hi - lo).max()) + 1
    channels_last = (not pixel_features.is_contiguous()
                     and pixel_features.is_contiguous(memory_format=torch.channels_last))
    if span > h * w or channels_last:
        # slot ranges wider than the image (a per-image buffer would be larger), or
        # maps stored channels-last, whose pixel rows are a view without a copy
        flat = pixel_features.permute(0, 2, 3, 1).reshape(-1, d).to(acc)
        pooled = pooled.index_add(0, index.reshape(-1), flat)
        return pooled / (counts[:, None] + _EPS), counts
    feats = pixel_features.reshape(n, d, h * w).to(acc)
    part = _LocalSlotSum.apply(feats, index - lo[:, None], span)  # (n, D, span)
    rows = lo[:, None] + torch.arange(span, device=index.device)  # (n, span) global slots
    valid = rows <= hi[:, None]
    pooled = pooled.index_add(0, rows[valid], part.transpose(1, 2)[valid])
    return pooled / (counts[:, None] + _EPS), counts


# --------------------------------------------------------------------- loss
def kept_slots(k: Tensor, counts: Optional[Tensor] = None, rule: str = 'first_channel') -> Tensor:
    """Ascending indices of the kept slots: ``k_σ[0] ≠ 0`` (the reference) or,
    with ``rule='count'``, ``m_σ > 0``.

    Raises:
        ValueError: On an unknown rule or a missing count.
    """
    if rule == 'first_channel':
        return torch.nonzero(k[:, 0] != 0)[:, 0]
    if rule == 'count':
        if counts is None:
            raise ValueError("rule='count' needs the pairing counts")
        return torch.nonzero(counts > 0)[:, 0]
    raise ValueError(f"rule must be 'first_channel' or 'count', got {rule!r}")


def superpixel_nce(k: Tensor,
                   q: Tensor,
                   temperature: float = 0.07,
                   counts: Optional[Tensor] = None,
                   rule: str = 'first_channel',
                   reduction: str = 'mean') -> Tuple[Tensor, int]:
    """``L = −(1/|K|) Σ_i log softmax_j(⟨k_i, q_j⟩/τ)[i]`` over the kept slots
    (3D → 2D only; every other kept slot of the batch is a negative).

    Args:
        reduction (str): ``'mean'`` (the paper's ``L``), ``'sum'``, or
            ``'none'`` for the ``(|K|,)`` per-slot terms.

    Returns:
        tuple: ``(loss, |K|)``. With nothing kept the loss is
        ``0·(Σk + Σq)`` — zero with a graph, instead of the reference's NaN
        (``'none'``: an empty vector) — and a warning is issued.

    Raises:
        ValueError: On mismatched shapes or a bad temperature.
    """
    t = check_temperature(temperature)
    if k.shape != q.shape or k.dim() != 2:
        raise ValueError(f'pooled 3D {tuple(k.shape)} and 2D {tuple(q.shape)} features must '
                         f'be matching (slots, D)')
    kept = kept_slots(k, counts, rule)
    if kept.numel() == 0:
        warnings.warn(
            'SLidR: no superpixel holds a paired point in this batch; the loss is '
            '0 (the reference would give NaN)',
            RuntimeWarning,
            stacklevel=2)
        if reduction != 'none':
            return 0.0 * (k.sum() + q.sum()), 0
    return info_nce(k[kept], q[kept], temperature=t, reduction=reduction), int(kept.numel())
