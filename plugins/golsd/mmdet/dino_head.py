"""GO-LSD DINO head: the matching part, the denoising part and the pre boxes."""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
from mmdet.models.dense_heads import DINOHead
from mmdet.models.utils import multi_apply
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import InstanceList
from torch import Tensor

from .head import GOLSDHeadMixin
from .host_losses import box_losses, classification_loss
from .matching import GroundTruth, Triple, rank_mean

__all__ = ['GOLSDDINOHead']


@MODELS.register_module()
class GOLSDDINOHead(GOLSDHeadMixin, DINOHead):
    """DINO head with FDR regression branches and GO-LSD losses.

    Args:
        golsd, loss_fgl, loss_ddf, nan_to_num, lqe, box_matches: see :class:`GOLSDHeadMixin`.
        *args, **kwargs: As :class:`DINOHead`.
    """

    def loss(self,
             hidden_states: Tensor,
             references: List[Tensor],
             enc_outputs_class: Tensor,
             enc_outputs_coord: Tensor,
             batch_data_samples: SampleList,
             dn_meta: Optional[Dict[str, int]],
             all_layers_corners: Optional[Tensor] = None,
             all_layers_boxes: Optional[Tensor] = None,
             anchors: Optional[Tensor] = None,
             pre_boxes: Optional[Tensor] = None,
             **kwargs) -> Dict[str, Tensor]:
        gts = [s.gt_instances for s in batch_data_samples]
        metas = [s.metainfo for s in batch_data_samples]
        cls, boxes = self(
            hidden_states,
            references,
            all_layers_boxes=all_layers_boxes,
            all_layers_corners=all_layers_corners)
        return self.loss_by_feat(
            cls,
            boxes,
            enc_outputs_class,
            enc_outputs_coord,
            gts,
            metas,
            dn_meta,
            all_layers_corners=all_layers_corners,
            anchors=anchors,
            pre_boxes=pre_boxes)

    def loss_by_feat(self,
                     all_layers_cls_scores: Tensor,
                     all_layers_bbox_preds: Tensor,
                     enc_cls_scores: Tensor,
                     enc_bbox_preds: Tensor,
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     dn_meta: Optional[Dict[str, int]],
                     batch_gt_instances_ignore=None,
                     all_layers_corners: Tensor = None,
                     anchors: Tensor = None,
                     pre_boxes: Tensor = None) -> Dict[str, Tensor]:
        """All losses; every key is present on every step (DDP-safe).

        Raises:
            ValueError: If the FDR outputs (corners, anchors, pre boxes) are
                missing.
        """
        self._check_fdr_inputs(all_layers_corners, anchors, pre_boxes)
        num_dn = int(dn_meta['num_denoising_queries']) if dn_meta else 0
        cls_all, box_all, cor_all = (all_layers_cls_scores, all_layers_bbox_preds,
                                     all_layers_corners)
        gt = GroundTruth(batch_gt_instances, batch_img_metas, cls_all.device)
        enc = (enc_cls_scores, enc_bbox_preds) if enc_cls_scores is not None else None
        losses, _, counts = self._matching_losses(
            cls_all[:, :, num_dn:],
            box_all[:, :, num_dn:],
            cor_all[:, :, num_dn:],
            anchors[:, num_dn:],
            pre_boxes[:, num_dn:],
            gt,
            batch_gt_instances,
            batch_img_metas,
            enc=enc)
        losses.update(
            self._dn_losses(cls_all, box_all, cor_all, anchors, pre_boxes, num_dn, dn_meta, gt,
                            counts, batch_gt_instances, batch_img_metas))
        return self._finite(losses)

    def _dn_match(self, batch_gt_instances: InstanceList, batch_img_metas: List[dict],
                  dn_meta: Dict[str, int], gt: GroundTruth) -> Triple:
        """The fixed denoising matches ``(b, q, g)``: the host's positive
        queries of each image, paired with its ground truths once per group."""
        pos = multi_apply(
            self._get_dn_targets_single, batch_gt_instances, batch_img_metas, dn_meta=dn_meta)[4]
        groups = int(dn_meta['num_denoising_groups'])
        bs, qs, gs = [], [], []
        for b, (p, g_count) in enumerate(zip(pos, gt.counts)):
            bs.append(torch.full_like(p, b))
            qs.append(p)
            gs.append(torch.arange(g_count, device=p.device).repeat(groups))
        return torch.cat(bs), torch.cat(qs), torch.cat(gs)

    def _dn_losses(self, cls_all, box_all, cor_all, anchors, pre_boxes, num_dn, dn_meta,
                   gt: GroundTruth, counts, batch_gt_instances,
                   batch_img_metas) -> Dict[str, Tensor]:
        num_layers = cls_all.shape[0]
        keys = (['dn_loss_cls', 'dn_loss_bbox', 'dn_loss_iou', 'dn_loss_fgl'] + [
            f'd{i}.dn_loss_{k}' for i in range(num_layers - 1)
            for k in ('cls', 'bbox', 'iou', 'fgl', 'ddf')
        ] + ['dn_pre_loss_cls', 'dn_pre_loss_bbox', 'dn_pre_loss_iou'])
        zero = cls_all.sum() * 0 + box_all.sum() * 0 + cor_all.sum() * 0
        if dn_meta is None:  # no denoising at all (same on every rank)
            return {k: zero for k in keys}
        # A rank without ground truth has num_dn == 0 while others may not: the
        # same code path (and so the same collectives) runs on empty tensors.
        cls_d, box_d, cor_d = cls_all[:, :, :num_dn], box_all[:, :, :num_dn], cor_all[:, :, :num_dn]
        match = self._dn_match(batch_gt_instances, batch_img_metas, dn_meta, gt)
        # box normaliser of the host's denoising part: rank-averaged positives
        avg_box = rank_mean(cls_all, match[0].numel())
        out: Dict[str, Tensor] = {}
        outputs = [(f'd{i}.dn_loss', cls_d[i], box_d[i]) for i in range(num_layers - 1)]
        outputs += [('dn_loss', cls_d[-1], box_d[-1]),
                    ('dn_pre_loss', cls_d[0], pre_boxes[:, :num_dn])]
        for key, cls, boxes in outputs:
            # classification through the head's own loss switch (Focal, VFL, QFL)
            out[f'{key}_cls'] = classification_loss(self, cls, match, gt, boxes)
            out[f'{key}_bbox'], out[f'{key}_iou'] = box_losses(self, boxes, match, gt, avg_box)
        # FGL normaliser of the reference: rank-averaged #GT (>= 1) x local groups
        groups = int(dn_meta['num_denoising_groups'])
        n_gt = rank_mean(cls_all, sum(gt.counts))
        targets = self._fgl_targets(anchors[:, :num_dn], match, gt)
        out.update(
            self._fdr_losses(cor_d, box_d, cls_d[-1], match, gt, targets, n_gt * groups, counts,
                             'dn_'))
        missing = [k for k in keys if k not in out]
        assert not missing, missing
        # the host returns a detached torch.zeros(1) for an empty DN part
        return {k: (v.sum() if v.requires_grad else zero) for k, v in out.items()}
