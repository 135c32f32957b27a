"""Memory-lean DSD loss: recompute each tap's head and terms in backward.

The straightforward loss keeps, for backward, eight full-resolution C-channel
tap maps with their up-sampling, softmax, log-softmax, one-hot and KL
intermediates. Here every term runs inside activation checkpointing over the
native-resolution tap features (which the network keeps anyway): its forward
value is computed by exactly the same operations, only a scalar survives, and
backward recomputes one term at a time. Losses are bit-identical; gradients
agree to float rounding (the teacher heads accumulate in another order).
"""
from __future__ import annotations

from typing import Callable, Dict, Mapping, Tuple

from torch import Tensor
from torch.utils.checkpoint import checkpoint

from plugins.core.functional import check_temperature

from .functional import (DECODER_STUDENTS, DECODER_TEACHER, DS_SLOTS, ENCODER_STUDENTS,
                         ENCODER_TEACHER, SLOTS, check_labels, dice_ce, kl_pix)

__all__ = ['dsd_loss_lean']

Head = Callable[[Tensor], Tensor]


def _ds_term(head: Head, labels: Tensor) -> Callable[[Tensor], Tensor]:
    def term(feature: Tensor) -> Tensor:
        dice, ce = dice_ce(head(feature), labels)
        return dice + ce
    return term


def _kd_term(student: Head, teacher: Head, temperature: float,
             detach_teacher: bool) -> Callable[[Tensor, Tensor], Tensor]:
    def term(f_student: Tensor, f_teacher: Tensor) -> Tensor:
        return kl_pix(student(f_student), teacher(f_teacher), temperature, detach_teacher)
    return term


def dsd_loss_lean(main: Tensor, features: Mapping[str, Tensor], heads: Mapping[str, Head],
                  labels: Tensor, temperature: float = 3.0, alpha: float = 1.0,
                  detach_teacher: bool = False,
                  encoder_kd: bool = True) -> Tuple[Tensor, Dict[str, Tensor]]:
    """The DSD loss from tap *features* and their heads, checkpointed per term.

    Args:
        main (Tensor): ``(B, C, *S)`` network output.
        features (Mapping[str, Tensor]): The eight tap features (native
            resolution), slots as :data:`plugins.dsd.functional.SLOTS` minus
            ``main``.
        heads (Mapping[str, Callable]): Slot → its head (feature → logits).
        labels, temperature, alpha, detach_teacher, encoder_kd: as
            :func:`plugins.dsd.functional.dsd_loss`.

    Returns:
        tuple: ``(total, terms)`` as :func:`~plugins.dsd.functional.dsd_loss`.

    Raises:
        KeyError: If a feature or head is missing.
        ValueError: On bad labels or temperature.
    """
    t = check_temperature(temperature)
    need = [s for s in SLOTS[1:] if encoder_kd or not s.startswith('enc')]
    missing = [s for s in need if s not in features or s not in heads]
    if missing:
        raise KeyError(f'lean DSD needs features and heads for {need}; missing {missing}')
    ids = check_labels(labels, main.shape[1], tuple(main.shape[2:]), main.shape[0])
    terms: Dict[str, Tensor] = {}
    dice, ce = dice_ce(main, ids)
    total = dice + ce
    terms['ds_main'] = total
    for s in DS_SLOTS[1:]:
        term = checkpoint(_ds_term(heads[s], ids), features[s], use_reentrant=False)
        terms[f'ds_{s}'] = term
        total = total + term
    pairs = [(s, DECODER_TEACHER) for s in DECODER_STUDENTS]
    if encoder_kd:
        pairs += [(s, ENCODER_TEACHER) for s in ENCODER_STUDENTS]
    kd = None
    for student, teacher in pairs:
        fn = _kd_term(heads[student], heads[teacher], t, detach_teacher)
        term = checkpoint(fn, features[student], features[teacher], use_reentrant=False)
        terms[f'kd_{student}'] = term
        kd = term if kd is None else kd + term
    total = total + alpha * kd
    return total, {k: v.detach() for k, v in terms.items()}

