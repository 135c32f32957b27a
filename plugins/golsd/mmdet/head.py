"""The GO-LSD head mixin: FDR branches, GO matching union, FGL and DDF losses.

Classification keeps each output's own one-to-one match;
box losses (L1, GIoU, FGL) and DDF weights use the GO union of the matches of
the last layer, the auxiliary layers, the pre boxes and the encoder top-k.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Tuple

import torch
from mmdet.models.losses import FocalLoss
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import InstanceList
from mmengine.logging import print_log
from torch import Tensor, nn

from ...core.options import build_registered, check_keys
from ..functional import (box_to_distance, fdr_layer_losses, fdr_weights, two_bin_targets,
                          weighting_function)
from ..losses import stock_pair
from .fdr import ddf_options, fdr_config
from .host_losses import box_losses, classification_loss
from .layers import LocationQuality, mlp
from .matching import GroundTruth, Triple, go_matches, rank_mean

__all__ = ['GOLSDHeadMixin', 'LocationQuality']


class GOLSDHeadMixin:
    """FDR branches and GO-LSD losses for DETR heads with box refinement.

    Mixed in before the host head class. Args (keyword, consumed here):
        golsd (dict): ``reg_max``, ``reg_scale``, ``up`` and optionally ``T``
            (set by the GO-LSD detector; ``T`` is DDF's temperature, which
            ``loss_ddf.temperature`` sets as well).
        loss_fgl (dict): The FGL module, default ``dict(type='FGLLoss',
            loss_weight=0.15)`` (:class:`~plugins.golsd.losses.FGLLoss`).
        loss_ddf (dict): The DDF module, default ``dict(type='DDFLoss',
            loss_weight=1.5, temperature=5.0)``.
        nan_to_num (bool): Replace non-finite loss values by 0 and log it, as
            D-FINE does. Off by default: the gradients of such a loss are NaN
            all the same, so a zeroed value only hides the divergence. The
            core's ``NonFiniteSkipOptimWrapper`` skips the step instead and the
            log shows the real (NaN) values.
        lqe (dict, optional): Add the location-quality term to every decoder
            layer's class logits (``k`` 4, ``hidden`` 64); off by default. The
            DDF teacher logits then include it.
        box_matches (str): Which matches the L1 and GIoU losses of every
            output use: ``'go'`` (default, D-FINE's): the GO union;
            ``'own'``: each output's own one-to-one match, as classification
            (an ablation of the one-to-many box supervision; FGL and DDF keep
            the union).

    Raises:
        ValueError: On unknown keys (naming the nearest valid one), when
            ``golsd.T`` and ``loss_ddf.temperature`` disagree, or on another
            ``box_matches``.
    """

    def __init__(self,
                 *args,
                 golsd: Optional[Dict] = None,
                 loss_fgl: Optional[Dict] = None,
                 loss_ddf: Optional[Dict] = None,
                 nan_to_num: bool = False,
                 lqe: Optional[Dict] = None,
                 box_matches: str = 'go',
                 **kwargs) -> None:
        if box_matches not in ('go', 'own'):
            raise ValueError(f"bbox_head.box_matches must be 'go' or 'own', got {box_matches!r}")
        self.box_matches = box_matches
        self.golsd = fdr_config(golsd)
        self.lqe_cfg = dict(lqe) if lqe is not None else None
        check_keys(lqe, ('k', 'hidden'), 'bbox_head.lqe')
        ddf_cfg = ddf_options(loss_ddf, self.golsd.get('T'))
        self.nan_to_num = nan_to_num
        super().__init__(*args, **kwargs)
        self.loss_fgl = build_registered(loss_fgl, 'FGLLoss', MODELS, 'bbox_head.loss_fgl')
        self.loss_ddf = build_registered(ddf_cfg, 'DDFLoss', MODELS, 'bbox_head.loss_ddf')
        if isinstance(self.loss_cls, FocalLoss):
            print_log(
                f'{type(self).__name__}: classification with FocalLoss. The box losses '
                'use the one-to-many GO matches, and Focal scores then rank the extra '
                'well-placed queries (duplicates) above true positives; D-FINE '
                "trains with VarifocalLoss (loss_cls=dict(type='VarifocalLoss', "
                "use_sigmoid=True, alpha=0.75, gamma=2.0, iou_weighted=True)), see "
                'docs/golsd.md',
                logger='current',
                level=logging.WARNING)
        self.register_buffer(
            'project',
            weighting_function(self.golsd['reg_max'], self.golsd['reg_scale'],
                               self.golsd['up']).float(),
            persistent=False)

    # ------------------------------------------------------------------ layers
    @property
    def num_fdr_layers(self) -> int:
        """Decoder layers (the extra branch, if any, serves the encoder)."""
        return self.num_pred_layer - 1 if self.as_two_stage else self.num_pred_layer

    def _init_layers(self) -> None:
        super()._init_layers()
        n_out = 4 * (self.golsd['reg_max'] + 1)
        branches = [
            mlp(self.embed_dims, n_out, self.num_reg_fcs) for _ in range(self.num_fdr_layers)
        ]
        branches += list(self.reg_branches[self.num_fdr_layers:])  # encoder: 4 outputs
        self.reg_branches = nn.ModuleList(branches)
        self.pre_head = mlp(self.embed_dims, 4, self.num_reg_fcs)
        self.lqe_layers = None if self.lqe_cfg is None else nn.ModuleList(
            [LocationQuality(**self.lqe_cfg) for _ in range(self.num_fdr_layers)])

    def init_weights(self) -> None:
        super().init_weights()
        for branch in list(self.reg_branches[:self.num_fdr_layers]) + [self.pre_head]:
            nn.init.zeros_(branch[-1].weight)
            nn.init.zeros_(branch[-1].bias)
        if not self.as_two_stage:
            # point references: the pre box starts at the host's w, h = sigmoid(-2)
            nn.init.constant_(self.pre_head[-1].bias[2:], -2.0)
        for layer in self.lqe_layers or []:
            layer.zero_last()

    # ----------------------------------------------------------------- forward
    def forward(self,
                hidden_states: Tensor,
                references: List[Tensor],
                all_layers_boxes: Optional[Tensor] = None,
                all_layers_corners: Optional[Tensor] = None,
                **kwargs) -> Tuple[Tensor, Tensor]:
        """Class logits per layer (plus the LQE term when on); boxes come
        from the decoder.

        Returns:
            tuple: ``(L, B, Qt, C)`` logits and ``(L, B, Qt, 4)`` boxes.

        Raises:
            ValueError: Without ``all_layers_boxes`` (a plain DINO decoder), or
                without ``all_layers_corners`` when LQE is on.
        """
        if all_layers_boxes is None:
            raise ValueError(f'{type(self).__name__} needs all_layers_boxes from the FDR '
                             f'decoder: use it inside GOLSDDINO or GOLSDDeformableDETR')
        lqe = self.lqe_layers
        if lqe is not None and all_layers_corners is None:
            raise ValueError(f'{type(self).__name__} with lqe needs all_layers_corners')
        cls = []
        for i in range(hidden_states.shape[0]):
            scores = self.cls_branches[i](hidden_states[i])
            if lqe is not None:
                scores = lqe[i](scores, all_layers_corners[i])
            cls.append(scores)
        return torch.stack(cls), all_layers_boxes

    def predict(self,
                hidden_states: Tensor,
                references: List[Tensor],
                batch_data_samples: SampleList,
                rescale: bool = True,
                all_layers_boxes: Optional[Tensor] = None,
                all_layers_corners: Optional[Tensor] = None,
                **kwargs) -> InstanceList:
        metas = [s.metainfo for s in batch_data_samples]
        outs = self(
            hidden_states,
            references,
            all_layers_boxes=all_layers_boxes,
            all_layers_corners=all_layers_corners)
        return self.predict_by_feat(*outs, batch_img_metas=metas, rescale=rescale)

    # ------------------------------------------------------------------- losses
    def _fgl_targets(self, anchors: Tensor, match: Triple, gt: GroundTruth):
        """Two-bin targets of the matched pairs, once per forward, in fp32."""
        b, q, g = match
        with torch.no_grad():
            phi = box_to_distance(anchors[b, q].float(), gt.xyxy[gt.rows(b, g)].float(),
                                  self.golsd['reg_scale'])
            return two_bin_targets(phi, self.project.float())

    def _fdr_losses(self,
                    corners: Tensor,
                    boxes: Tensor,
                    cls_last: Tensor,
                    match: Triple,
                    gt: GroundTruth,
                    targets,
                    avg: float,
                    counts: Optional[Tuple[int, int]],
                    dn: str = '') -> Dict[str, Tensor]:
        """FGL for every layer and DDF for layers ``0..L−2`` of one part.

        The stock loss modules are computed together in one batched pass over
        the stacked logits (:func:`fdr_layer_losses`); other modules through
        their own ``forward``, layer by layer.
        """
        b, q, g = match
        num_layers = corners.shape[0]
        with torch.autocast(device_type=corners.device.type, enabled=False):
            conf = cls_last.detach().float().sigmoid().max(-1).values  # (B, Q)
            gt_xyxy = gt.xyxy[gt.rows(b, g)]
            if stock_pair(self.loss_fgl, self.loss_ddf):
                fgl, ddf = fdr_layer_losses(corners.float(), boxes, conf, b, q, gt_xyxy, targets,
                                            avg, counts, self.loss_ddf.temperature)
                fgl, ddf = self.loss_fgl.loss_weight * fgl, self.loss_ddf.loss_weight * ddf
            else:
                iou, matched, weights = fdr_weights(boxes, conf, b, q, gt_xyxy)
                z = corners.float()
                fgl = [self.loss_fgl(z[i, b, q], targets, iou[i], avg) for i in range(num_layers)]
                ddf = [
                    self.loss_ddf(z[i], z[-1], matched, weights[i], counts)
                    for i in range(num_layers - 1)
                ]
        out: Dict[str, Tensor] = {}
        for i in range(num_layers):
            key = ('loss' if i == num_layers - 1 else f'd{i}.loss').replace('loss', dn + 'loss')
            out[f'{key}_fgl'] = fgl[i]
            if i < num_layers - 1:
                out[f'{key}_ddf'] = ddf[i]
        return out

    def _matching_losses(self,
                         cls_m: Tensor,
                         box_m: Tensor,
                         cor_m: Tensor,
                         anc_m: Tensor,
                         pre_m: Tensor,
                         gt: GroundTruth,
                         batch_gt_instances: InstanceList,
                         batch_img_metas: List[dict],
                         enc: Optional[Tuple[Tensor, Tensor]] = None,
                         enc_vote: Optional[Tuple[Tensor, Tensor, InstanceList]] = None):
        """Losses of the matching queries (every layer, pre boxes, encoder).

        Args:
            cls_m, box_m, cor_m: ``(L, B, Q, ·)`` logits, boxes, corner logits.
            anc_m, pre_m: ``(B, Q, 4)`` anchors and pre boxes.
            enc (tuple, optional): Query-aligned encoder top-k ``(cls, boxes)``:
                votes in GO, and gets ``enc_loss_*`` (own match for cls, GO for
                boxes).
            enc_vote (tuple, optional): ``(cls, boxes, gt_instances)`` of
                query-aligned proposals that only vote (their loss is the
                host's).

        Returns:
            tuple: ``(losses, go, counts)``; ``counts = (N_m, N_u)`` for DDF.
        """
        m = go_matches(
            self.assigner,
            cls_m,
            box_m,
            pre_m,
            batch_gt_instances,
            batch_img_metas,
            enc=enc,
            votes=[enc_vote] if enc_vote is not None else [])
        go = m.union  # order: last, aux 0..L-2, pre, encoder
        n_go = rank_mean(cls_m, go[0].numel())
        # logged, not a loss: how one-to-many the box supervision is (1 = one-to-one)
        losses: Dict[str, Tensor] = dict(
            go_queries_per_gt=cls_m.new_tensor(go[0].numel() / max(sum(gt.counts), 1)).detach())
        outputs = [('loss' if i == cls_m.shape[0] - 1 else f'd{i}.loss', cls_m[i], box_m[i],
                    m.layers[i]) for i in range(cls_m.shape[0])]
        outputs.append(('pre_loss', cls_m[0], pre_m, m.pre))
        if m.enc is not None:
            outputs.append(('enc_loss', enc[0], enc[1], m.enc))
        for key, cls, boxes, own in outputs:
            losses[f'{key}_cls'] = classification_loss(self, cls, own, gt, boxes)
            if self.box_matches == 'go':
                box_match, box_avg = go, n_go
            else:
                box_match, box_avg = own, rank_mean(cls_m, own[0].numel())
            losses[f'{key}_bbox'], losses[f'{key}_iou'] = box_losses(self, boxes, box_match, gt,
                                                                     box_avg)
        targets = self._fgl_targets(anc_m, go, gt)
        losses.update(self._fdr_losses(cor_m, box_m, cls_m[-1], go, gt, targets, n_go, None))
        n_m = 4 * go[0].numel()
        counts = (n_m, 4 * cls_m.shape[1] * cls_m.shape[2] - n_m)
        return losses, go, counts

    @staticmethod
    def _check_fdr_inputs(corners, anchors, pre_boxes) -> None:
        if corners is None or anchors is None or pre_boxes is None:
            raise ValueError('GO-LSD heads need all_layers_corners, anchors and pre_boxes '
                             'from a GO-LSD detector (GOLSDDINO, GOLSDDeformableDETR)')

    def _finite(self, losses: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """Replace non-finite values by 0 (one device sync), and say so."""
        if not self.nan_to_num:
            return losses
        values = torch.stack([v.detach().float().reshape(-1).sum() for v in losses.values()])
        bad = ~torch.isfinite(values)
        if bool(bad.any()):
            names = [k for k, flag in zip(losses, bad.tolist()) if flag]
            print_log(
                f'GO-LSD: non-finite losses replaced by 0: {names}',
                logger='current',
                level=logging.WARNING)
            losses = {
                k: (v.nan_to_num(0.0, 0.0, 0.0) if k in names else v)
                for k, v in losses.items()
            }
        return losses
