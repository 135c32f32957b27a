"""``DSDEncoderDecoder``: mmseg's ``EncoderDecoder`` with dual self-distillation.

    custom_imports = dict(imports=['plugins'], allow_failed_imports=False)
    model = dict(type='DSDEncoderDecoder', auxiliary_head=None,
                 loss_dsd=dict(type='DSDLoss', temperature=3.0, alpha=1.0))

Training runs the backbone once: hooks on ``backbone.encoder.0..4`` and
``backbone.decoder.3..1`` turn each tap into full-resolution class logits
through the DSD heads (``backbone.dsd_heads``), the decode head gives
``main``, and the DSD loss replaces the decode head's own loss. Labels equal to
``ignore_index`` (255; mmseg pads with it) leave every term. Prediction and
testing (``mode='slide'`` or ``'whole'``) are the stock segmentor's: the hooks
are inert in eval mode and exported weights drop ``backbone.dsd_heads``.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS
from torch import Tensor

from ...core.options import merge_options
from ..models.attach import DSDTaps
from ..options import build_dsd_loss, split_legacy

__all__ = ['DSDEncoderDecoder']


@MODELS.register_module()
class DSDEncoderDecoder(EncoderDecoder):
    """``EncoderDecoder`` whose training loss is DSD.

    Args:
        dsd_taps (dict, optional): Where the heads attach: ``preset``
            (``'mmseg_unet'``) and ``probe_size`` (input side of the
            build-time shape probe; default twice the backbone's
            down-sampling).
        loss_dsd (dict, optional): The DSD loss,
            ``dict(type='DSDLoss', temperature=3.0, alpha=1.0,
            detach_teacher=False, encoder_kd=True, ignore_index=255,
            strategy='straightforward' | 'lean')``, built from mmseg's
            registry with the taps passed in (``ignore_index`` defaults to
            255 here: mmseg pads labels with it).
        dsd (dict, optional): Deprecated single block of both (warns).
        **kwargs: As ``EncoderDecoder``.

    Raises:
        ValueError: If the config keeps an ``auxiliary_head`` (it would
            supervise ``dec1`` a second time), on unknown DSD keys (naming
            the nearest), or if the decode head's logits are not at label
            resolution.
    """

    _TAPS_DEFAULTS = dict(preset='mmseg_unet', probe_size=None)
    _LOSS_DEFAULTS = dict(ignore_index=255)

    def __init__(self,
                 *args,
                 dsd_taps: Optional[dict] = None,
                 loss_dsd: Optional[dict] = None,
                 dsd: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        dsd_taps, loss_dsd = split_legacy(dsd, dsd_taps, loss_dsd, 'model.dsd')
        taps_cfg = merge_options(self._TAPS_DEFAULTS, dsd_taps, 'model.dsd_taps')
        if self.with_auxiliary_head:
            raise ValueError('DSDEncoderDecoder supervises the decoder taps itself; set '
                             'auxiliary_head=None in the config (the base FCN-UNet '
                             'auxiliary head would supervise dec1 twice)')
        in_channels = self._input_channels()
        self.dsd_taps = DSDTaps(
            self.backbone,
            taps_cfg['preset'],
            num_classes=self.decode_head.out_channels,
            spatial_dims=2,
            probe_size=taps_cfg['probe_size'],
            in_channels=in_channels)
        self.dsd_loss = build_dsd_loss(
            loss_dsd, self.dsd_taps, MODELS, 'model.loss_dsd', defaults=self._LOSS_DEFAULTS)

    def _input_channels(self) -> int:
        return int(getattr(self.backbone, 'in_channels', 0) or 0)

    def loss(self, inputs: Tensor, data_samples) -> Dict[str, Tensor]:
        """DSD losses: ``loss_dsd`` (the total, what mmengine back-propagates)
        and the eleven terms as ``dsd_<term>`` for the log.

        Raises:
            ValueError: If the decode head's logits are not at label
                resolution, or on bad labels.
        """
        feats = self.extract_feat(inputs)
        main = self.decode_head.forward(feats)
        labels = torch.stack([s.gt_sem_seg.data for s in data_samples]).to(main.device)
        if main.shape[-2:] != labels.shape[-2:]:
            raise ValueError(f'DSD needs the decode head logits at label resolution: got '
                             f'{tuple(main.shape[-2:])} vs labels '
                             f'{tuple(labels.shape[-2:])}; use in_index of the '
                             f'full-resolution decoder stage')
        total = self.dsd_loss(main, labels)
        losses = {'loss_dsd': total}
        losses.update({f'dsd_{k}': v for k, v in self.dsd_loss.last_terms.items()})
        return losses
