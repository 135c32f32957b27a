"""Memory-lean DSD loss: no full-resolution tap map outlives its own terms.

The straightforward loss keeps, for backward, eight full-resolution C-channel
tap maps with their up-sampling, softmax, log-softmax, one-hot and KL
intermediates. Here the heads run up to their last up-sampling with a normal
(small, at most half-resolution) graph; one autograd node then applies the
last up-sampling and computes every term *and* its closed-form logit gradient
(:mod:`plugins.dsd.grads`) in the forward pass, one teacher group at a time,
and keeps only the gradients at the last up-sampling's input (an eighth of a
map; a full map for the scale-1 head) and parameters. Backward hands them on.

Inside the node the full-resolution maps live in a voxel order that makes the
kernel-2, stride-2 transposed convolution a plain matrix product: position
``d·N' + v'`` holds output voxel ``2·v' + d`` (``v'`` a half-resolution voxel,
``d`` one of the ``2^dims`` kernel offsets). Every term is a per-voxel
function summed over voxels, so only the labels (once) and the scale-1 head's
input are reordered. The maps use a few reused buffers (see
:mod:`plugins.dsd.grads`). Values and gradients equal the straightforward
mode up to float rounding (summation order).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from plugins.core.functional import check_temperature

from .functional import (DECODER_STUDENTS, DECODER_TEACHER, ENCODER_STUDENTS, ENCODER_TEACHER,
                         SLOTS, as_float32, check_labels, dice_ce, valid_mask)
from .grads import TeacherKL, class_counts, dice_ce_grad_, softmax_pair
from .models.heads import DSDHead

__all__ = ['dsd_loss_lean', 'lean_term_names', 'to_offset_order', 'from_offset_order']


def _groups(encoder_kd: bool) -> List[Tuple[str, Tuple[str, ...], bool]]:
    """(teacher, students, ground-truth supervised) per teacher group."""
    groups = [(DECODER_TEACHER, DECODER_STUDENTS, True)]
    if encoder_kd:
        groups.append((ENCODER_TEACHER, ENCODER_STUDENTS, False))
    return groups


def lean_term_names(encoder_kd: bool = True) -> List[str]:
    """Order of the terms the lean node returns (``ds_main`` is outside)."""
    names = []
    for teacher, students, supervised in _groups(encoder_kd):
        if supervised:
            names.append(f'ds_{teacher}')
            names += [f'ds_{s}' for s in students]
        names += [f'kd_{s}' for s in students]
    return names


def to_offset_order(x: Tensor) -> Tensor:
    """``(B, X, *S)`` (even sizes) → ``(B, X, 2^dims·N')``, voxel ``2·v' + d`` at
    ``d·N' + v'`` (``d`` the kernel offset, first axis slowest)."""
    b, ch, *size = x.shape
    dims = len(size)
    split = [b, ch]
    for n in size:
        split += [n // 2, 2]
    order = [0, 1] + [3 + 2 * i for i in range(dims)] + [2 + 2 * i for i in range(dims)]
    return x.reshape(split).permute(order).reshape(b, ch, -1)


def from_offset_order(x: Tensor, size: Tuple[int, ...]) -> Tensor:
    """Inverse of :func:`to_offset_order` for spatial ``size``."""
    b, ch = x.shape[:2]
    dims = len(size)
    x = x.reshape([b, ch] + [2] * dims + [n // 2 for n in size])
    order = [0, 1]
    for i in range(dims):
        order += [2 + dims + i, 2 + i]
    return x.permute(order).reshape(b, ch, *size)


@dataclass
class _Plan:
    """What the autograd node needs besides tensors."""

    heads: Mapping[str, DSDHead]
    slots: List[str]
    params: List[nn.Parameter]
    temperature: float
    alpha: float
    detach_teacher: bool
    encoder_kd: bool
    labels: Tensor  # (B, 1, N) in offset order (when offsets > 1)
    size: Tuple[int, ...]  # full-resolution spatial size
    offsets: int  # 2^dims if some head up-samples (offset order), else 1
    grad_enabled: bool  # autograd on at the call (no gradients under no_grad)
    mask: Optional[Tensor] = None  # (B, 1, N) bool kept voxels, offset order

    @property
    def names(self) -> List[str]:
        return lean_term_names(self.encoder_kd)

    @property
    def weights(self) -> Dict[str, float]:
        """Weight of each term in the total: 1 for Dice-CE, alpha for KD."""
        return {n: (1.0 if n.startswith('ds_') else self.alpha) for n in self.names}


class _Buffers:
    """Full-size ``(B, C, N)`` maps, allocated on first need and reused."""

    def __init__(self, like: Tensor) -> None:
        self.like = like
        self.free: List[Tensor] = []

    def take(self) -> Tensor:
        return self.free.pop() if self.free else torch.empty_like(self.like)

    def give(self, *maps: Optional[Tensor]) -> None:
        self.free.extend(m for m in maps if m is not None)


class _LastStep:
    """One slot's last up-sampling as a matrix product in offset order, and
    its hand-written backward (input, weight and bias gradients)."""

    def __init__(self, head: DSDHead, x: Tensor, need_grad: bool, offsets: int) -> None:
        self.head = head
        self.need_x = need_grad and x.requires_grad
        self.need_w = need_grad and head.up.weight.requires_grad
        self.need_b = need_grad and head.up.bias is not None and head.up.bias.requires_grad
        self.dtype = x.dtype
        self.x_shape = x.shape
        xf = as_float32(x.detach())
        self.reordered = head.scale == 1 and offsets > 1
        if head.scale == 1:
            # kernel-1 transposed conv on the reordered full-resolution input
            self.xf = to_offset_order(xf) if self.reordered else xf.flatten(2)
            self.rep = 1
        else:
            self.xf = xf.flatten(2)  # (B, C, N')
            self.rep = offsets
        self.b = xf.shape[0]

    def weight(self, dtype: torch.dtype) -> Tensor:
        """``(C_in, C_out·rep)``: output channel major, kernel offset minor."""
        return self.head.up.weight.detach().to(dtype).reshape(self.head.up.weight.shape[0], -1)

    def logits(self, out: Tensor) -> Tensor:
        """Write ``(B, C, N)`` logits into ``out`` and return it."""
        w = self.weight(out.dtype)
        bias = self.head.up.bias.detach().to(out.dtype).repeat_interleave(self.rep)
        n = self.xf.shape[2]
        torch.baddbmm(
            bias.view(1, -1, 1).expand(self.b, -1, n),
            w.t().expand(self.b, -1, -1),
            self.xf,
            out=out.view(self.b, -1, n))
        return out

    def backward(self, grad_z: Tensor, grads: Dict[object, Tensor], key_x: str,
                 size: Tuple[int, ...]) -> None:
        """Accumulate d/dx (under ``key_x``) and d/d(up params) (under their id)."""
        n = self.xf.shape[2]
        g = grad_z.view(self.b, -1, n)  # (B, C_out·rep, N')
        if self.need_x:
            w = self.weight(g.dtype)
            gx = torch.bmm(w.expand(self.b, -1, -1), g)  # (B, C_in, N')
            if self.reordered:
                gx = from_offset_order(gx, size)
            _add(grads, key_x, gx.reshape(self.x_shape).to(self.dtype))
        up = self.head.up
        if self.need_w:
            gw = torch.bmm(self.xf, g.transpose(1, 2)).sum(0)  # (C_in, C_out·rep)
            _add(grads, id(up.weight), gw.view(up.weight.shape).to(up.weight.dtype))
        if self.need_b:
            gb = grad_z.view(self.b, up.bias.shape[0], -1).sum((0, 2))
            _add(grads, id(up.bias), gb.to(up.bias.dtype))


def _add(grads: Dict[object, Tensor], key: object, g: Tensor) -> None:
    grads[key] = g if key not in grads else grads[key] + g


def _lean_terms(
        plan: _Plan,
        inputs: Tuple[Tensor, ...]) -> Tuple[Dict[str, Tensor], Dict[object, Tensor], torch.dtype]:
    """Every term's value and the gradients at the node's inputs."""
    n = len(plan.slots)
    xs = dict(zip(plan.slots, inputs[:n]))
    need_grad = plan.grad_enabled and any(t.requires_grad for t in inputs)
    weight = plan.weights
    labels = plan.labels
    ref = next(iter(xs.values()))
    dtype = torch.float64 if ref.dtype == torch.float64 else torch.float32
    num_classes = plan.heads[plan.slots[0]].up.weight.shape[1]
    buffers = _Buffers(
        torch.empty(labels.shape[0], num_classes, labels.shape[2], dtype=dtype, device=ref.device))
    mask = valid = None
    if plan.mask is not None:
        mask = plan.mask.to(dtype)
        valid = mask.sum().clamp(min=1)
    counts = class_counts(labels, num_classes, dtype, mask)
    t = plan.temperature
    values: Dict[str, Tensor] = {}
    grads: Dict[object, Tensor] = {}

    def last(slot: str) -> Tuple[_LastStep, Tensor]:
        step = _LastStep(plan.heads[slot], xs[slot], need_grad, plan.offsets)
        return step, step.logits(buffers.take())

    def supervise(z: Tensor, grad: Optional[Tensor], name: str, accumulate: bool) -> None:
        """Dice-CE of logits ``z`` (consumed) into ``grad``."""
        log_p, prob = softmax_pair(z, buffers.take())
        values[name] = dice_ce_grad_(prob, log_p, labels, counts, grad, weight[name], accumulate,
                                     mask, valid)
        buffers.give(prob, log_p)

    for teacher, students, supervised in _groups(plan.encoder_kd):
        step_t, z_t = last(teacher)
        teacher_needs_grad = need_grad and not plan.detach_teacher
        scaled = torch.div(z_t, t, out=buffers.take())
        g_t = None
        if supervised:
            g_t = buffers.take() if need_grad else None
            supervise(z_t, g_t, f'ds_{teacher}', False)
        else:
            buffers.give(z_t)
        temp = buffers.take()
        kl = TeacherKL(scaled, buffers.take(), t, temp,
                       buffers.take() if teacher_needs_grad else None, mask, valid)
        buffers.give(temp)
        for s in students:
            step, z_s = last(s)
            q_in = torch.div(z_s, t, out=buffers.take()) if supervised else z_s.div_(t)
            values[f'kd_{s}'], g_s, free = kl.student(q_in, buffers.take(), weight[f'kd_{s}'],
                                                      need_grad)
            buffers.give(free)
            if supervised:
                supervise(z_s, g_s if need_grad else None, f'ds_{s}', True)
            if need_grad:
                step.backward(g_s, grads, s, plan.size)
            buffers.give(g_s)
            del step
        if teacher_needs_grad:
            g_t = kl.finish(g_t)
        if need_grad and g_t is not None:
            step_t.backward(g_t, grads, teacher, plan.size)
        buffers.give(kl.log_p, kl.p)
        if kl.acc is not None and kl.acc is not g_t:
            buffers.give(kl.acc)
        buffers.give(g_t)
        del kl, step_t
    return values, grads, dtype


class _LeanDSD(torch.autograd.Function):

    @staticmethod
    def forward(ctx, plan: _Plan, *inputs: Tensor) -> Tensor:  # type: ignore[override]
        # the maps are float32 (or float64) whatever autocast would choose
        with torch.autocast(inputs[0].device.type, enabled=False):
            values, grads, dtype = _lean_terms(plan, inputs)
        ctx.grads = grads
        ctx.keys = list(plan.slots) + [id(p) for p in plan.params]
        ctx.weight = list(plan.weights.values())
        return torch.stack([values[n] for n in plan.names]).to(dtype)

    @staticmethod
    def backward(ctx, grad_terms: Tensor):  # type: ignore[override]
        # the gradients were formed for the weights the terms enter the total
        # with; rescale if the caller's upstream gradient differs
        upstream = grad_terms.detach().double().cpu()
        weight = torch.tensor(ctx.weight, dtype=torch.float64)
        used = weight != 0
        factor = float(upstream[used][0] / weight[used][0]) if bool(used.any()) else 0.0
        if not torch.allclose(upstream, weight * factor, rtol=1e-6, atol=1e-12):
            raise RuntimeError('the lean DSD terms must enter the loss with their DSD '
                               'weights (1 for Dice-CE, alpha for KD); back-propagate '
                               'the total returned by dsd_loss_lean (or a multiple)')
        if getattr(ctx, 'spent', False):
            # the gradient buffers were handed to autograd by the first backward
            # (keeping copies would double the memory the lean path saves)
            raise RuntimeError('the lean DSD loss was already back-propagated: a second '
                               'backward through the same graph (retain_graph=True) needs '
                               "loss_dsd=dict(strategy='straightforward'), or a new forward")
        ctx.spent = True
        out = []
        for key in ctx.keys:
            g = ctx.grads.pop(key, None)
            out.append(None if g is None else (g if factor == 1.0 else g * factor))
        return (None, *out)


def dsd_loss_lean(main: Tensor,
                  features: Mapping[str, Tensor],
                  heads: Mapping[str, DSDHead],
                  labels: Tensor,
                  temperature: float = 3.0,
                  alpha: float = 1.0,
                  detach_teacher: bool = False,
                  encoder_kd: bool = True,
                  ignore_index: Optional[int] = None) -> Tuple[Tensor, Dict[str, Tensor]]:
    """The DSD loss from tap *features* and their heads, without keeping logits.

    Args:
        main (Tensor): ``(B, C, *S)`` network output.
        features (Mapping[str, Tensor]): The eight tap features (native
            resolution), slots as :data:`plugins.dsd.functional.SLOTS` minus
            ``main``.
        heads (Mapping[str, DSDHead]): Slot → its head; heads shared by
            several slots accumulate both gradients.
        labels, temperature, alpha, detach_teacher, encoder_kd, ignore_index:
            as :func:`plugins.dsd.functional.dsd_loss`.

    Returns:
        tuple: ``(total, terms)`` as :func:`~plugins.dsd.functional.dsd_loss`;
        back-propagate ``total`` (or a positive multiple of it).

    Raises:
        KeyError: If a feature or head is missing.
        ValueError: On bad labels or temperature.
    """
    t = check_temperature(temperature)
    slots = [s for s in SLOTS[1:] if encoder_kd or not s.startswith('enc')]
    missing = [s for s in slots if s not in features or s not in heads]
    if missing:
        raise KeyError(f'lean DSD needs features and heads for {slots}; missing {missing}')
    ids = check_labels(labels, main.shape[1], tuple(main.shape[2:]), main.shape[0], ignore_index)
    keep = valid_mask(ids, ignore_index)
    if keep is not None:
        ids = ids.masked_fill(~keep, 0)
    params: List[nn.Parameter] = []
    seen = set()
    for s in slots:
        for p in (heads[s].up.weight, heads[s].up.bias):
            if id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    size = tuple(main.shape[2:])
    offsets = 2**len(size) if any(heads[s].scale > 1 for s in slots) else 1
    flat = to_offset_order if offsets > 1 else (lambda x: x.flatten(2))
    plan = _Plan(heads, slots, params, t, alpha, detach_teacher, encoder_kd, flat(ids), size,
                 offsets, torch.is_grad_enabled(), None if keep is None else flat(keep))
    xs = [heads[s].trunk(features[s]) for s in slots]
    values = _LeanDSD.apply(plan, *xs, *params)
    dice, ce = dice_ce(main, ids, keep)
    terms: Dict[str, Tensor] = {'ds_main': dice + ce}
    terms.update(zip(plan.names, values.unbind(0)))
    total = terms['ds_main']
    for s in SLOTS[1:5]:
        total = total + terms[f'ds_{s}']
    kd = None
    for s in DECODER_STUDENTS + (ENCODER_STUDENTS if encoder_kd else ()):
        kd = terms[f'kd_{s}'] if kd is None else kd + terms[f'kd_{s}']
    total = total + alpha * kd
    return total, {k: v.detach() for k, v in terms.items()}
