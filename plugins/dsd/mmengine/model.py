"""``MonaiSegmentor``: a stock MONAI network as an mmengine ``BaseModel``.

    model = dict(type='MonaiSegmentor', num_classes=3, roi_size=(32, 32, 32),
                 network=dict(type='DynUNet', spatial_dims=3, in_channels=1, ...),
                 dsd_taps=dict(preset='dynunet'),              # leave both out: Dice-CE
                 loss_dsd=dict(type='DSDLoss', temperature=3.0, strategy='lean'))

The wrapped network is ``model.network``, the untouched MONAI module (plus
``network.dsd_heads`` with DSD); ``tools/export.py --strip-prefix network.``
gives a state dict the stock network loads strictly.
"""
from __future__ import annotations

import importlib
from typing import Dict, List, Optional, Sequence, Union

from mmengine.model import BaseModel
from mmengine.registry import MODELS
from torch import Tensor, nn

from ..functional import check_labels, dice_ce
from ..models.attach import DSDTaps
from ..options import build_dsd_loss, check_taps_options, split_legacy

__all__ = ['MonaiSegmentor', 'build_monai_network']


def build_monai_network(cfg: Union[dict, nn.Module]) -> nn.Module:
    """Build ``dict(type='DynUNet', **kwargs)`` from ``monai.networks.nets``
    (or ``type='package.module.Class'``).

    Raises:
        ValueError: If ``type`` is missing or names no class.
    """
    if isinstance(cfg, nn.Module):
        return cfg
    cfg = dict(cfg)
    name = cfg.pop('type', None)
    if not name:
        raise ValueError(f'network config needs a type, got {cfg}')
    if isinstance(name, type):
        return name(**cfg)
    module_name, _, attr = name.rpartition('.')
    module = importlib.import_module(module_name or 'monai.networks.nets')
    cls = getattr(module, attr, None)
    if cls is None:
        raise ValueError(f'network type {name!r} not found in '
                         f'{module_name or "monai.networks.nets"}')
    return cls(**cfg)


@MODELS.register_module()
class MonaiSegmentor(BaseModel):
    """Train a MONAI segmentation network with Dice-CE or DSD; predict with
    sliding windows.

    Args:
        network (dict | nn.Module): The stock network (see
            :func:`build_monai_network`).
        num_classes (int): ``C`` (background included).
        roi_size (Sequence[int]): Sliding-window ROI (= training crop).
        dsd_taps (dict, optional): Where the DSD heads attach: ``preset``
            (required with DSD) and ``probe_size`` (default ``roi_size`` for
            UNETR).
        loss_dsd (dict, optional): The DSD loss,
            ``dict(type='DSDLoss', temperature=3.0, alpha=1.0,
            strategy='straightforward' | 'lean', ...)``, built from the
            registry with the taps passed in. Leave both out to train with
            plain Dice-CE on the output.
        dsd (dict, optional): Deprecated single block of both (warns).
        sw_batch_size (int): Windows per forward at inference (1).
        overlap (float): Window overlap (0.25, constant blending).
        data_preprocessor (dict, optional): mmengine data preprocessor.

    Raises:
        ValueError: On unknown DSD keys (naming the nearest) or a missing
            preset.
    """

    def __init__(self,
                 network: Union[dict, nn.Module],
                 num_classes: int,
                 roi_size: Sequence[int],
                 dsd_taps: Optional[dict] = None,
                 loss_dsd: Optional[dict] = None,
                 dsd: Optional[dict] = None,
                 sw_batch_size: int = 1,
                 overlap: float = 0.25,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.network = build_monai_network(network)
        self.num_classes = int(num_classes)
        self.roi_size = tuple(int(r) for r in roi_size)
        self.sw_batch_size = sw_batch_size
        self.overlap = overlap
        self.dsd_taps: Optional[DSDTaps] = None
        dsd_taps, loss_dsd = split_legacy(dsd, dsd_taps, loss_dsd, 'model.dsd')
        if dsd_taps is not None or loss_dsd is not None:
            taps_kw = check_taps_options(dsd_taps, 'model.dsd_taps')
            if 'preset' not in taps_kw:
                raise ValueError(f'DSD needs model.dsd_taps=dict(preset=...) naming where its '
                                 f'heads attach; got dsd_taps={dsd_taps}')
            if taps_kw.get('probe_size') is None and 'unetr' == taps_kw['preset']:
                taps_kw['probe_size'] = self.roi_size[0]
            self.dsd_taps = DSDTaps(
                self.network,
                num_classes=self.num_classes,
                spatial_dims=len(self.roi_size),
                **taps_kw)
            self.dsd_loss = build_dsd_loss(loss_dsd, self.dsd_taps, MODELS, 'model.loss_dsd')

    def forward(self,
                inputs: Tensor,
                data_samples: Optional[Tensor] = None,
                mode: str = 'tensor') -> Union[Dict[str, Tensor], List[dict], Tensor]:
        """``inputs (B, C_in, *S)``; ``data_samples (B, 1, *S)`` labels.

        Returns:
            ``'loss'``: ``loss_dsd`` (or ``loss_dice_ce``) and the logged terms;
            ``'predict'``: one ``dict(pred=(1, *S) long, label=(1, *S))`` per
            volume from sliding-window inference; ``'tensor'``: the logits.

        Raises:
            ValueError: On an unknown mode, or missing / bad labels.
        """
        if mode == 'tensor':
            return self.network(inputs)
        if mode == 'loss':
            if data_samples is None:
                raise ValueError("mode='loss' needs labels as data_samples")
            logits = self.network(inputs)
            if self.dsd_taps is None:
                ids = check_labels(data_samples, logits.shape[1], tuple(logits.shape[2:]),
                                   logits.shape[0])
                dice, ce = dice_ce(logits, ids)
                return {'loss_dice_ce': dice + ce}
            total = self.dsd_loss(logits, data_samples)
            out = {'loss_dsd': total}
            out.update({f'dsd_{k}': v for k, v in self.dsd_loss.last_terms.items()})
            return out
        if mode == 'predict':
            from monai.inferers import sliding_window_inference
            logits = sliding_window_inference(
                inputs,
                self.roi_size,
                self.sw_batch_size,
                self.network,
                overlap=self.overlap,
                mode='constant')
            preds = logits.argmax(1, keepdim=True)
            labels = data_samples if data_samples is not None else [None] * len(preds)
            return [dict(pred=p, label=l) for p, l in zip(preds, labels)]
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")
