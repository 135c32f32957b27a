"""Per-slot sums of pixel features along runs of equal slots, compiled with
numba for the CPU (the forward of :func:`plugins.slidr.functional.pool_pixels`).

Superpixels are spatially coherent, so along an image row the slot changes
only at superpixel borders: the pixels form runs of one slot. Summing each
run in registers and adding it once to its slot (four channels at a time)
reads the ``(n, D, H·W)`` map once, in order, instead of scattering every
pixel. The result equals a per-pixel ``index_add`` up to float rounding
(the additions are grouped by run).

numba is optional (the ``lidar`` extra): without it, or for other devices and
dtypes, the caller keeps its ``index_add`` loop. numba is imported on first
use, not with the module.
"""
from __future__ import annotations

import warnings
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

__all__ = ['run_sums_available', 'run_sums_accept', 'slot_run_sums']

_KERNEL: Optional[Callable] = None
_TRIED = False


def _build() -> Optional[Callable]:
    try:
        import numba
    except ImportError:  # pragma: no cover - numba ships with the lidar extra
        return None

    @numba.njit(cache=True, nogil=True)
    def kernel(x, local, out):  # pragma: no cover - compiled
        n, d, p = x.shape
        starts = np.empty(p + 1, np.int64)
        for i in range(n):
            runs = 0
            for j in range(p):
                if j == 0 or local[i, j] != local[i, j - 1]:
                    starts[runs] = j
                    runs += 1
            starts[runs] = p
            c = 0
            while c + 4 <= d:  # four channels per pass: independent sums in flight
                for r in range(runs):
                    a, b = starts[r], starts[r + 1]
                    s0, s1, s2, s3 = x[i, c, a], x[i, c + 1, a], x[i, c + 2, a], x[i, c + 3, a]
                    for j in range(a + 1, b):
                        s0 += x[i, c, j]
                        s1 += x[i, c + 1, j]
                        s2 += x[i, c + 2, j]
                        s3 += x[i, c + 3, j]
                    slot = local[i, a]
                    out[i, c, slot] += s0
                    out[i, c + 1, slot] += s1
                    out[i, c + 2, slot] += s2
                    out[i, c + 3, slot] += s3
                c += 4
            while c < d:
                for r in range(runs):
                    a, b = starts[r], starts[r + 1]
                    s0 = x[i, c, a]
                    for j in range(a + 1, b):
                        s0 += x[i, c, j]
                    out[i, c, local[i, a]] += s0
                c += 1

    return kernel


def _kernel() -> Optional[Callable]:
    global _KERNEL, _TRIED
    if not _TRIED:
        _TRIED = True
        _KERNEL = _build()
    return _KERNEL


def run_sums_available() -> bool:
    """Whether the compiled kernel can run (numba importable, and it has not
    failed to compile)."""
    return _kernel() is not None


def run_sums_accept(feats: Tensor) -> bool:
    """Whether ``feats`` has the layout the kernel reads: a contiguous
    ``(n, D, P)`` float32/float64 CPU tensor."""
    return (feats.device.type == 'cpu' and feats.dtype in (torch.float32, torch.float64)
            and feats.dim() == 3 and feats.is_contiguous())


def _disable(err: Exception) -> None:
    """Turn the kernel off for this process after a compile or run failure."""
    global _KERNEL
    _KERNEL = None
    warnings.warn(
        f'SLidR: the compiled pixel-pooling kernel failed ({type(err).__name__}: {err}); '
        f'pooling falls back to index_add (slower, same values)',
        RuntimeWarning,
        stacklevel=3)


def slot_run_sums(feats: Tensor, local: Tensor, span: int) -> Optional[Tensor]:
    """``out[i, :, s] = Σ_{p : local[i, p] = s} feats[i, :, p]``.

    Args:
        feats (Tensor): ``(n, D, P)`` contiguous float32/float64 on the CPU.
        local (Tensor): ``(n, P)`` int64 slots in ``[0, span)``.
        span (int): Slots per image.

    Returns:
        Tensor or None: ``(n, D, span)`` in ``feats``' dtype; None when the
        kernel cannot run (numba missing, or it failed to compile: warned
        once, then off for the process), for the caller's fallback.

    Raises:
        ValueError: On another device, dtype, layout or an out-of-range slot
            (the kernel does not check indices, so they are checked here).
    """
    kernel = _kernel()
    if kernel is None:
        return None
    if not run_sums_accept(feats):
        raise ValueError(f'feats must be a contiguous (n, D, P) float32/float64 CPU tensor, got '
                         f'{feats.dtype} {tuple(feats.shape)} on {feats.device}')
    n, _, p = feats.shape
    if tuple(local.shape) != (n, p) or local.dtype != torch.int64:
        raise ValueError(f'local must be int64 ({n}, {p}), got {local.dtype} '
                         f'{tuple(local.shape)}')
    if local.numel() and (int(local.min()) < 0 or int(local.max()) >= span):
        raise ValueError(f'slots must lie in [0, {span})')
    out = feats.new_zeros(n, feats.shape[1], span)
    if out.numel() and p:
        try:
            kernel(feats.detach().numpy(), local.contiguous().numpy(), out.numpy())
        except Exception as err:  # noqa: BLE001 - an optional accelerator must not stop training
            _disable(err)
            return None
    return out
