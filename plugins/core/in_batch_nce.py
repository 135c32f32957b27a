"""In-batch InfoNCE in row blocks: the ``(N, M)`` similarity matrix is never
held whole, forward or backward.

``ℓ_i = logsumexp_j(⟨q_i, p_j⟩/τ) − ⟨q_i, p_i⟩/τ`` for ``i < N ≤ M``. A
plain implementation keeps several ``N×M`` buffers alive (the logits, their
log-softmax, and in backward the gradients of each); with a few thousand rows
(SLidR's superpixels of a batch, MACIL-SD's banks) those buffers dominate the
loss's time and memory. Here the forward walks the rows in blocks and keeps
only the per-row losses (and, when one block holds every row, its softmax);
the backward recomputes each block's softmax and turns it into the gradient
in place:

    G = (softmax(L) − onehot(i)) · g_i,   ∂q = G p / τ,   ∂p = Gᵀ q / τ.

Half-precision inputs are computed in float32 (as the plain path upcasts its
logits) and autocast is off inside: the result does not depend on the
surrounding precision context.
"""
from __future__ import annotations

import contextlib
from typing import Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ['in_batch_nce_rows']

#: elements of one ``(rows, M)`` block: 4 MiB in float32 on a CPU, so a
#: block is reused from the heap instead of being page-faulted in every time.
CPU_BLOCK_ELEMENTS = 1 << 20
#: larger blocks on a GPU, whose caching allocator reuses them anyway.
GPU_BLOCK_ELEMENTS = 1 << 24


def _block_rows(n: int, m: int, device: torch.device) -> int:
    budget = GPU_BLOCK_ELEMENTS if device.type == 'cuda' else CPU_BLOCK_ELEMENTS
    return max(1, min(n, budget // max(m, 1)))


def _block_softmax(qs: Tensor, positive: Tensor, start: int,
                   stop: int) -> Tuple[Tensor, Tensor, Tensor]:
    """``exp(L − max)`` of the rows ``start:stop`` (in place on a fresh block)
    and returns it with the row maxima and diagonal logits."""
    block = qs[start:stop] @ positive.t()
    rows = torch.arange(stop - start, device=block.device)
    diagonal = block[rows, rows + start]
    top = block.amax(1, keepdim=True)
    block.sub_(top).exp_()
    return block, top[:, 0], diagonal


class _InBatchNCE(torch.autograd.Function):

    @staticmethod
    def forward(ctx, query: Tensor, positive: Tensor, temperature: float) -> Tensor:
        n = query.shape[0]
        qs = query / temperature
        out = query.new_empty(n)
        step = _block_rows(n, positive.shape[0], query.device)
        ctx.probs = None
        for start in range(0, n, step):
            stop = min(n, start + step)
            block, top, diagonal = _block_softmax(qs, positive, start, stop)
            sums = block.sum(1)
            out[start:stop] = top + sums.log() - diagonal
            if step >= n:  # one block: keep its softmax, the backward need not recompute it
                ctx.probs = block.div_(sums[:, None])
        ctx.save_for_backward(query, positive)
        ctx.temperature = temperature
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        query, positive = ctx.saved_tensors
        t = ctx.temperature
        n = query.shape[0]
        qs = query / t if ctx.probs is None else None  # only to recompute the blocks
        grad = grad.to(query.dtype).contiguous()
        grad_q = torch.empty_like(query) if ctx.needs_input_grad[0] else None
        grad_p = torch.zeros_like(positive) if ctx.needs_input_grad[1] else None
        step = _block_rows(n, positive.shape[0], query.device)
        for start in range(0, n, step):
            stop = min(n, start + step)
            g = grad[start:stop]
            if ctx.probs is not None:  # kept by the forward; left intact for a retained graph
                block = ctx.probs * g[:, None]
            else:
                block, _, _ = _block_softmax(qs, positive, start, stop)
                block.mul_((g / block.sum(1))[:, None])  # softmax · g
            rows = torch.arange(stop - start, device=block.device)
            block[rows, rows + start] -= g
            if grad_q is not None:
                torch.mm(block, positive, out=grad_q[start:stop])
            if grad_p is not None:
                grad_p.addmm_(block.t(), query[start:stop])
        if grad_q is not None:
            grad_q.div_(t)
        if grad_p is not None:
            grad_p.div_(t)
        return grad_q, grad_p, None


def in_batch_nce_rows(query: Tensor, positive: Tensor, temperature: float) -> Tensor:
    """Per-row in-batch InfoNCE, computed in row blocks.

    Args:
        query (Tensor): ``(N, D)``.
        positive (Tensor): ``(M, D)``, ``M ≥ N``; row ``i`` is query ``i``'s
            positive, every other row a negative.
        temperature (float): ``τ > 0`` (checked by the caller).

    Returns:
        Tensor: ``(N,)`` losses, float32 for half-precision inputs, else the
        inputs' dtype. Differentiable once (no double backward).
    """
    acc = torch.promote_types(torch.promote_types(query.dtype, positive.dtype), torch.float32)
    with _autocast_off(query.device.type):
        return _InBatchNCE.apply(query.to(acc), positive.to(acc), float(temperature))


def _autocast_off(device_type: str):
    """Autocast disabled for ``device_type``; nothing to disable on a device
    type autocast does not know (``meta``)."""
    try:
        return torch.autocast(device_type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()
