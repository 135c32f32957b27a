"""Memory-lean DSD loss: no full-resolution tap map outlives its own terms.

The straightforward loss keeps, for backward, eight full-resolution C-channel
tap maps with their up-sampling, softmax, log-softmax, one-hot and KL
intermediates. Here the heads run up to their last up-sampling with a normal
(small, at most half-resolution) graph; one autograd node then applies the
last up-sampling and computes every term *and* its closed-form logit gradient
(:mod:`plugins.dsd.grads`) in the forward pass, one teacher group at a time,
and keeps only the gradients at the last up-sampling's input (an eighth of a
map; a full map for the scale-1 head) and parameters. Backward hands them on.
Forward values use the same operations as the straightforward mode
(bit-identical on CPU); gradients agree to float rounding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Tuple

import torch
from torch import Tensor, nn

from plugins.core.functional import check_temperature

from .functional import (DECODER_STUDENTS, DECODER_TEACHER, ENCODER_STUDENTS,
                         ENCODER_TEACHER, SLOTS, check_labels, dice_ce)
from .grads import TeacherKL, dice_ce_value_and_grad
from .heads import DSDHead

__all__ = ['dsd_loss_lean', 'lean_term_names']


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
    labels: Tensor

    @property
    def names(self) -> List[str]:
        return lean_term_names(self.encoder_kd)


class _LastStep:
    """One slot's last up-sampling, and its gradients for a given ``dL/dz``.

    With ``keep_graph`` the one-op graph is kept from the forward; otherwise
    (teachers, whose gradient is complete only after all their students) it is
    rebuilt in :meth:`backward`, so no full-resolution map waits.
    """

    def __init__(self, head: DSDHead, x: Tensor, need_grad: bool, keep_graph: bool) -> None:
        self.head = head
        self.x = x.detach().requires_grad_(need_grad and x.requires_grad)
        self.params = [p for p in (head.up.weight, head.up.bias) if p.requires_grad]
        self.need_grad = need_grad and (self.x.requires_grad or bool(self.params))
        with torch.set_grad_enabled(self.need_grad and keep_graph):
            self.z = head.last(self.x)

    def logits(self) -> Tensor:
        return self.z.detach()

    def backward(self, grad_z: Tensor, grads: Dict[object, Tensor], key_x: str) -> None:
        """Accumulate d/dx (under ``key_x``) and d/d(up params) (under their id)."""
        inputs = ([self.x] if self.x.requires_grad else []) + self.params
        if not inputs:
            return
        if self.z is None or not self.z.requires_grad:
            with torch.enable_grad():
                self.z = self.head.last(self.x)
        out = torch.autograd.grad(self.z, inputs, grad_z.to(self.z.dtype))
        for t, g in zip(inputs, out):
            key = key_x if t is self.x else id(t)
            grads[key] = g if key not in grads else grads[key] + g
        self.z = None


class _LeanDSD(torch.autograd.Function):

    @staticmethod
    def forward(ctx, plan: _Plan, *inputs: Tensor) -> Tensor:  # type: ignore[override]
        n = len(plan.slots)
        xs = dict(zip(plan.slots, inputs[:n]))
        need_grad = any(t.requires_grad for t in inputs)
        weight = {name: (1.0 if name.startswith('ds_') else plan.alpha) for name in plan.names}
        values: Dict[str, Tensor] = {}
        grads: Dict[int, Tensor] = {}
        for teacher, students, supervised in _groups(plan.encoder_kd):
            step_t = _LastStep(plan.heads[teacher], xs[teacher], need_grad, keep_graph=False)
            z_t = step_t.logits()
            g_t = None
            if supervised:
                values[f'ds_{teacher}'], g_t = dice_ce_value_and_grad(
                    z_t, plan.labels, weight[f'ds_{teacher}'])
            kl = TeacherKL(z_t, plan.temperature,
                           need_teacher_grad=need_grad and not plan.detach_teacher,
                           initial_grad=g_t if need_grad else None)
            step_t.z = None
            del z_t, g_t
            for s in students:
                step = _LastStep(plan.heads[s], xs[s], need_grad, keep_graph=True)
                z_s = step.logits()
                values[f'kd_{s}'], g_s = kl.student(z_s, weight[f'kd_{s}'], need_grad)
                if supervised:
                    values[f'ds_{s}'], g_ds = dice_ce_value_and_grad(z_s, plan.labels,
                                                                    weight[f'ds_{s}'])
                    g_s = g_ds if g_s is None else g_s.add_(g_ds)
                    del g_ds
                del z_s
                if need_grad:
                    step.backward(g_s, grads, s)
                del g_s, step
            g_t = kl.teacher_grad
            del kl
            if need_grad and g_t is not None:
                step_t.backward(g_t, grads, teacher)
            del g_t, step_t
        ctx.grads = grads
        ctx.keys = list(plan.slots) + [id(p) for p in plan.params]
        ctx.names = plan.names
        ctx.weight = [weight[n] for n in plan.names]
        return torch.stack([values[n] for n in plan.names])

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
        out = []
        for key in ctx.keys:
            g = ctx.grads.pop(key, None)
            out.append(None if g is None else (g if factor == 1.0 else g * factor))
        return (None, *out)


def dsd_loss_lean(main: Tensor, features: Mapping[str, Tensor], heads: Mapping[str, DSDHead],
                  labels: Tensor, temperature: float = 3.0, alpha: float = 1.0,
                  detach_teacher: bool = False,
                  encoder_kd: bool = True) -> Tuple[Tensor, Dict[str, Tensor]]:
    """The DSD loss from tap *features* and their heads, without keeping logits.

    Args:
        main (Tensor): ``(B, C, *S)`` network output.
        features (Mapping[str, Tensor]): The eight tap features (native
            resolution), slots as :data:`plugins.dsd.functional.SLOTS` minus
            ``main``.
        heads (Mapping[str, DSDHead]): Slot → its head; heads shared by
            several slots accumulate both gradients.
        labels, temperature, alpha, detach_teacher, encoder_kd: as
            :func:`plugins.dsd.functional.dsd_loss`.

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
    ids = check_labels(labels, main.shape[1], tuple(main.shape[2:]), main.shape[0])
    params: List[nn.Parameter] = []
    seen = set()
    for s in slots:
        for p in (heads[s].up.weight, heads[s].up.bias):
            if id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    plan = _Plan(heads, slots, params, t, alpha, detach_teacher, encoder_kd, ids)
    xs = [heads[s].trunk(features[s]) for s in slots]
    values = _LeanDSD.apply(plan, *xs, *params)
    dice, ce = dice_ce(main, ids)
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
