"""``DSDEncoderDecoder``: mmseg's ``EncoderDecoder`` with dual self-distillation.

    custom_imports = dict(imports=['plugins'], allow_failed_imports=False)
    model = dict(type='DSDEncoderDecoder', auxiliary_head=None,
                 dsd=dict(temperature=3.0, alpha=1.0))

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
from ..attach import DSDLoss, DSDTaps

__all__ = ['DSDEncoderDecoder']


@MODELS.register_module()
class DSDEncoderDecoder(EncoderDecoder):
    """``EncoderDecoder`` whose training loss is DSD.

    Args:
        dsd (dict, optional): ``temperature`` (3), ``alpha`` (1),
            ``detach_teacher`` (False), ``encoder_kd`` (True), ``mode``
            (``'straightforward'`` or ``'lean'``), ``ignore_index``
            (255), ``preset`` (``'mmseg_unet'``), ``probe_size`` (input side of
            the build-time shape probe; default twice the backbone's
            down-sampling).
        **kwargs: As ``EncoderDecoder``.

    Raises:
        ValueError: If the config keeps an ``auxiliary_head`` (it would
            supervise ``dec1`` a second time), on unknown ``dsd`` keys, or if
            the decode head's logits are not at label resolution.
    """

    _DEFAULTS = dict(temperature=3.0, alpha=1.0, detach_teacher=False, encoder_kd=True,
                     ignore_index=255, preset='mmseg_unet', probe_size=None,
                     mode='straightforward')

    def __init__(self, *args, dsd: Optional[dict] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cfg = merge_options(self._DEFAULTS, dsd, 'model.dsd')
        if self.with_auxiliary_head:
            raise ValueError('DSDEncoderDecoder supervises the decoder taps itself; set '
                             'auxiliary_head=None in the config (the base FCN-UNet '
                             'auxiliary head would supervise dec1 twice)')
        self.dsd_cfg = cfg
        in_channels = self._input_channels()
        self.dsd_taps = DSDTaps(self.backbone, cfg['preset'],
                                num_classes=self.decode_head.out_channels, spatial_dims=2,
                                probe_size=cfg['probe_size'], in_channels=in_channels,
                                mode=cfg['mode'])
        self.dsd_loss = DSDLoss(self.dsd_taps, cfg['temperature'], cfg['alpha'],
                                cfg['detach_teacher'], cfg['encoder_kd'],
                                cfg['ignore_index'])

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
