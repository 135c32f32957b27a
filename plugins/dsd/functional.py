"""Dual self-distillation (DSD) loss on plain tensors (Banerjee et al.,
arXiv:2306.03271; the original implementation is
github.com/soumbane/DualSelfDistillation).

Slots, in canonical order: ``main, dec4, dec3, dec2, dec1, enc1, enc2, enc3, enc4``.
Every slot is full-resolution class logits ``(B, C, *S)`` (2D or 3D).

    L    = L_DS + α·T²·( Σ_{s∈{dec4,dec3,dec2}} KLpix(p_T(z_dec1) ‖ p_T(z_s))
                       + Σ_{s∈{enc1,enc2,enc3}} KLpix(p_T(z_enc4) ‖ p_T(z_s)) )
    L_DS = Σ_{k∈{main,dec4,dec3,dec2,dec1}} DiceCE(z_k, y)

Teachers are not detached by default: ``enc4`` learns only through the KL
terms, ``dec1`` through DiceCE and the teacher side of KL.
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from plugins.core.functional import check_temperature, temperature_kl

__all__ = [
    'SLOTS', 'TAP_SLOTS', 'DS_SLOTS', 'DECODER_STUDENTS', 'ENCODER_STUDENTS', 'dice_ce', 'kl_pix',
    'dsd_loss', 'check_labels', 'valid_mask'
]

#: the one definition of the slots; every other list derives from these two
ENCODER_SLOTS = ('enc1', 'enc2', 'enc3', 'enc4')
DECODER_SLOTS = ('dec4', 'dec3', 'dec2', 'dec1')
#: the eight tapped slots in the order their heads are built (encoder first)
TAP_SLOTS = ENCODER_SLOTS + DECODER_SLOTS
#: the loss's canonical order: the network output, the decoder, the encoder
SLOTS = ('main', ) + DECODER_SLOTS + ENCODER_SLOTS
DS_SLOTS = ('main', ) + DECODER_SLOTS
DECODER_TEACHER, ENCODER_TEACHER = DECODER_SLOTS[-1], ENCODER_SLOTS[-1]
DECODER_STUDENTS = DECODER_SLOTS[:-1]
ENCODER_STUDENTS = ENCODER_SLOTS[:-1]
_SMOOTH = 1e-5


def check_labels(labels: Tensor,
                 num_classes: int,
                 spatial: Tuple[int, ...],
                 batch: int,
                 ignore_index: Optional[int] = None) -> Tensor:
    """Validate ``(B, 1, *S)`` integer class ids and return them as long.

    Args:
        labels (Tensor): ``(B, 1, *S)`` class ids (float storage accepted).
        num_classes (int): ``C``.
        spatial (tuple): ``S``.
        batch (int): ``B``.
        ignore_index (int, optional): A label value that marks pixels to
            leave out (e.g. 255), allowed besides ``[0, C)``.

    Raises:
        ValueError: On a wrong shape, non-integer values or ids outside
            ``[0, num_classes)`` (the message names the offending values).
    """
    want = (batch, 1, *spatial)
    if tuple(labels.shape) != want:
        raise ValueError(f'labels must have shape (B, 1, *S) = {want} to match the '
                         f'logits, got {tuple(labels.shape)}')
    if labels.is_floating_point():
        if not torch.equal(labels, labels.round()):
            raise ValueError('labels hold non-integer values; expected class ids')
    ids = labels.long()
    bad = (ids < 0) | (ids >= num_classes)
    if ignore_index is not None:
        bad &= ids != ignore_index
    if bool(bad.any()):
        values = torch.unique(ids[bad])[:8].tolist()
        extra = '' if ignore_index is None else f' or the ignore value {ignore_index}'
        raise ValueError(f'label values {values} are outside the class range '
                         f'[0, {num_classes - 1}]{extra} (num_classes={num_classes})')
    return ids


def valid_mask(ids: Tensor, ignore_index: Optional[int]) -> Optional[Tensor]:
    """``(B, 1, *S)`` bool mask of kept voxels, or None if none is ignored."""
    if ignore_index is None:
        return None
    keep = ids != ignore_index
    return None if bool(keep.all()) else keep


def dice_ce(logits: Tensor, labels: Tensor, mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Dice + CE as MONAI's ``DiceCELoss(include_background=True,
    to_onehot_y=True, softmax=True)``.

    Dice ``= mean_{b,c}[1 − (2Σ_v P·G + 1e-5) / (Σ_v P + Σ_v G + 1e-5)]`` with
    ``P = softmax(z)``, ``G = onehot(y)``; CE ``= mean_{b,v} −log softmax(z)_y``.

    Args:
        logits (Tensor): ``(B, C, *S)``, computed in float32 (or float64).
        labels (Tensor): ``(B, 1, *S)`` long class ids (already checked).
        mask (Tensor, optional): ``(B, 1, *S)`` bool, voxels to keep (an
            extension for ignore labels: masked voxels leave the Dice sums and
            the CE mean; with every voxel masked CE is 0).

    Returns:
        tuple: ``(dice, ce)`` scalars.
    """
    z = as_float32(logits)
    dice = _soft_dice(z, labels, mask)
    if mask is None:
        ce = F.cross_entropy(z, labels[:, 0])
    else:
        labels = labels.masked_fill(~mask, 0)
        nll = F.cross_entropy(z, labels[:, 0], reduction='none') * mask[:, 0]
        ce = nll.sum() / mask.sum().clamp(min=1)
    return dice, ce


def as_float32(x: Tensor) -> Tensor:
    """Half-precision maps are computed in float32 (float64 stays float64)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _soft_dice(z: Tensor, labels: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """The soft Dice of :func:`dice_ce`."""
    dims = tuple(range(2, z.dim()))
    prob = torch.softmax(z, dim=1)
    if mask is not None:
        labels = labels.masked_fill(~mask, 0)
    onehot = torch.zeros_like(prob).scatter_(1, labels, 1.0)
    if mask is not None:
        prob = prob * mask
        onehot = onehot * mask
    inter = (prob * onehot).sum(dims)
    denom = prob.sum(dims) + onehot.sum(dims)
    return (1.0 - (2.0 * inter + _SMOOTH) / (denom + _SMOOTH)).mean()


def kl_pix(student: Tensor,
           teacher: Tensor,
           temperature: float,
           detach_teacher: bool = False,
           mask: Optional[Tensor] = None) -> Tensor:
    """``T²·KLpix(p_T(teacher) ‖ p_T(student))``: KL summed over classes, then
    averaged over batch and voxels (not ``batchmean``); over the kept voxels
    when ``mask (B, 1, *S)`` is given."""
    kl = temperature_kl(
        student, teacher, temperature, dim=1, class_reduction='sum', detach_teacher=detach_teacher)
    if mask is None:
        return kl.mean()
    return (kl * mask[:, 0]).sum() / mask.sum().clamp(min=1)


def dsd_loss(logits: Mapping[str, Tensor],
             labels: Tensor,
             temperature: float = 3.0,
             alpha: float = 1.0,
             detach_teacher: bool = False,
             encoder_kd: bool = True,
             ignore_index: Optional[int] = None,
             detach_terms: bool = True) -> Tuple[Tensor, Dict[str, Tensor]]:
    """The DSD loss and its 11 terms.

    Args:
        logits (Mapping[str, Tensor]): The nine slots (see :data:`SLOTS`), each
            ``(B, C, *S)``.
        labels (Tensor): ``(B, 1, *S)`` integer class ids (float storage is
            accepted).
        temperature (float): ``T`` (3).
        alpha (float): Weight of the KD sum (1; a real multiplier here).
        detach_teacher (bool): Option (default off, as the method).
        encoder_kd (bool): Option: ``False`` drops the encoder terms (the
            reference's decoder-only ablation).
        ignore_index (int, optional): Extension for 2D hosts (mmseg pads
            labels with 255): voxels with this label leave every term.
        detach_terms (bool): Return the terms detached (for logging) or with
            their graphs (for hosts that sum loss dictionaries).

    Returns:
        tuple: ``(total, terms)``; ``terms`` holds ``ds_<slot>`` (DiceCE, 5) and
        ``kd_<slot>`` (``T²·KLpix``, 6, 3 without encoder KD), detached.

    Raises:
        KeyError: If a slot is missing.
        ValueError: On mismatched shapes, bad labels, a bad temperature or a
            negative or non-finite ``alpha``. An empty batch (``B = 0``) gives
            graph-connected zeros.
    """
    t = check_temperature(temperature)
    alpha = float(alpha)
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f'alpha (the weight of the KD terms) must be finite and ≥ 0, '
                         f'got {alpha}')
    need = SLOTS if encoder_kd else SLOTS[:5]
    missing = [s for s in need if s not in logits]
    if missing:
        raise KeyError(f'DSD needs logits for slots {list(need)}; missing {missing}')
    ref = logits['main']
    if ref.dim() not in (4, 5):
        raise ValueError(f'logits must be (B, C, H, W) or (B, C, D, H, W), got '
                         f'{tuple(ref.shape)} for slot main')
    for s in need:
        if logits[s].shape != ref.shape:
            raise ValueError(f'slot {s} has shape {tuple(logits[s].shape)}, main has '
                             f'{tuple(ref.shape)}: every tap must be full-resolution '
                             f'class logits')
    ids = check_labels(labels, ref.shape[1], tuple(ref.shape[2:]), ref.shape[0], ignore_index)
    pairs = [(s, DECODER_TEACHER) for s in DECODER_STUDENTS]
    if encoder_kd:
        pairs += [(s, ENCODER_TEACHER) for s in ENCODER_STUDENTS]
    if ref.shape[0] == 0:  # an empty batch: graph-connected zeros, not NaN
        zero = sum(logits[s].sum() for s in need) * 0
        names = [f'ds_{s}' for s in DS_SLOTS] + [f'kd_{s}' for s, _ in pairs]
        return zero, {k: (zero.detach() if detach_terms else zero) for k in names}
    mask = valid_mask(ids, ignore_index)
    terms: Dict[str, Tensor] = {}
    total = None
    for s in DS_SLOTS:
        dice, ce = dice_ce(logits[s], ids, mask)
        term = dice + ce
        terms[f'ds_{s}'] = term
        total = term if total is None else total + term
    kd = None
    for student, teacher in pairs:
        term = kl_pix(logits[student], logits[teacher], t, detach_teacher, mask)
        terms[f'kd_{student}'] = term
        kd = term if kd is None else kd + term
    total = total + alpha * kd
    if detach_terms:
        terms = {k: v.detach() for k, v in terms.items()}
    return total, terms
