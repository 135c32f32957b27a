"""DSD's one public loss, with two execution strategies behind it.

    taps = DSDTaps(net, 'dynunet')
    loss_fn = DSDLoss(taps, temperature=3.0, strategy='lean')   # or 'straightforward'
    loss = loss_fn(net(x), y)

In configs the hosts build it from the registry (the taps are theirs to pass):

    loss_dsd=dict(type='DSDLoss', temperature=3.0, alpha=1.0, strategy='lean')

Both strategies compute :func:`plugins.dsd.functional.dsd_loss` (dual
self-distillation, Banerjee et al., arXiv:2306.03271): ``'straightforward'`` on the
eight full-resolution tap logits the hooks keep, ``'lean'`` by
:func:`plugins.dsd.lean.dsd_loss_lean` from the native-resolution features
(equal values and gradients up to float rounding, a fraction of the memory,
one backward per forward).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional

from torch import Tensor, nn

from ..core.functional import check_temperature
from .functional import check_labels, dice_ce, dsd_loss, valid_mask
from .lean import dsd_loss_lean

__all__ = ['DSDLoss']


class DSDLoss(nn.Module):
    """The DSD loss for ``loss(pred, target)`` call sites (MONAI trainers,
    bundles, the mmengine and mmseg segmentors).

    Args:
        taps (DSDTaps): The taps of the network whose output is ``pred``
            (:class:`~plugins.dsd.DSDTaps`; in configs the host passes them).
        temperature (float): ``T`` (3).
        alpha (float): Weight of the KD sum (1).
        detach_teacher (bool): Stop gradients through the teachers (off).
        encoder_kd (bool): ``False`` keeps only the decoder KD terms.
        ignore_index (int, optional): Label value to leave out of every term
            (2D hosts pad labels with 255).
        strategy (str, optional): ``'straightforward'`` or ``'lean'``; sets
            what the taps record. ``None`` keeps the taps' ``mode``.
        loss_weight (float): Multiplier of the total and the logged terms (1).

    In eval mode (no tap logits recorded) the loss is ``DiceCE(main)``, the
    original implementation's validation loss. The last call's terms are in
    :attr:`last_terms`.

    Raises:
        ValueError: On an unknown strategy, a bad temperature, a negative
            ``alpha`` or ``loss_weight``.
    """

    def __init__(self,
                 taps: Any,
                 temperature: float = 3.0,
                 alpha: float = 1.0,
                 detach_teacher: bool = False,
                 encoder_kd: bool = True,
                 ignore_index: Optional[int] = None,
                 strategy: Optional[str] = None,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if strategy is not None:
            taps.set_mode(strategy)  # checks the name against the taps' modes
        if not (math.isfinite(float(loss_weight)) and loss_weight >= 0):
            raise ValueError(f'loss_weight must be finite and >= 0, got {loss_weight}')
        check_temperature(temperature)
        self.taps = taps
        self.temperature = temperature
        self.alpha = alpha
        self.detach_teacher = detach_teacher
        self.encoder_kd = encoder_kd
        self.ignore_index = ignore_index
        self.loss_weight = float(loss_weight)
        self.last_terms: Dict[str, Tensor] = {}

    @property
    def strategy(self) -> str:
        """The execution strategy (the taps' recording mode)."""
        return self.taps.mode

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """``pred (B, C, *S)`` main logits; ``target (B, 1, *S)`` class ids.

        Raises:
            KeyError: In train mode, if the taps recorded nothing.
            ValueError: On bad labels or shapes.
        """
        w = self.loss_weight  # multiplying by 1.0 changes no bit
        if not self.taps.network.training:
            ids = check_labels(target, pred.shape[1], tuple(pred.shape[2:]), pred.shape[0],
                               self.ignore_index)
            dice, ce = dice_ce(pred, ids, valid_mask(ids, self.ignore_index))
            self.last_terms = {'ds_main': w * (dice + ce).detach()}
            return w * (dice + ce)
        recorded = self.taps.pop_logits()
        if self.strategy == 'lean':
            total, terms = dsd_loss_lean(pred, recorded, self.taps.heads, target, self.temperature,
                                         self.alpha, self.detach_teacher, self.encoder_kd,
                                         self.ignore_index)
            self.last_terms = {k: w * v for k, v in terms.items()}
            return w * total
        recorded['main'] = pred
        total, terms = dsd_loss(
            recorded,
            target,
            self.temperature,
            self.alpha,
            self.detach_teacher,
            self.encoder_kd,
            self.ignore_index,
            detach_terms=False)
        self.last_terms = {k: w * v.detach() for k, v in terms.items()}
        return w * total

    def extra_repr(self) -> str:
        return (f'strategy={self.strategy!r}, temperature={self.temperature}, '
                f'alpha={self.alpha}, detach_teacher={self.detach_teacher}, '
                f'encoder_kd={self.encoder_kd}, ignore_index={self.ignore_index}, '
                f'loss_weight={self.loss_weight}')
