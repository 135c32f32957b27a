"""GO-LSD Deformable-DETR head (box refinement, optionally two-stage)."""
from __future__ import annotations

import copy
from typing import Dict, List, Optional

import torch
from mmdet.models.dense_heads import DeformableDETRHead
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import InstanceList
from torch import Tensor

from .head import GOLSDHeadMixin
from .host_losses import box_losses, classification_loss
from .matching import GroundTruth, hungarian, rank_mean

__all__ = ['GOLSDDeformableDETRHead']


@MODELS.register_module()
class GOLSDDeformableDETRHead(GOLSDHeadMixin, DeformableDETRHead):
    """Deformable-DETR (box refinement) head with FDR branches and GO-LSD.

    The encoder loss stays the host's (all encoder tokens, class-agnostic);
    with two-stage, the top-k proposals in decoder-query order join the GO
    vote, matched against class-agnostic ground truth as the encoder is trained.

    Args:
        golsd, loss_fgl, loss_ddf, nan_to_num, lqe, box_matches: see :class:`GOLSDHeadMixin`.
        *args, **kwargs: As :class:`DeformableDETRHead`.
    """

    def loss(self,
             hidden_states: Tensor,
             references: List[Tensor],
             enc_outputs_class: Optional[Tensor],
             enc_outputs_coord: Optional[Tensor],
             batch_data_samples: SampleList,
             all_layers_corners: Optional[Tensor] = None,
             all_layers_boxes: Optional[Tensor] = None,
             anchors: Optional[Tensor] = None,
             pre_boxes: Optional[Tensor] = None,
             enc_topk_class: Optional[Tensor] = None,
             enc_topk_coord: Optional[Tensor] = None,
             **kwargs) -> Dict[str, Tensor]:
        gts = [s.gt_instances for s in batch_data_samples]
        metas = [s.metainfo for s in batch_data_samples]
        cls, boxes = self(
            hidden_states,
            references,
            all_layers_boxes=all_layers_boxes,
            all_layers_corners=all_layers_corners)
        self._check_fdr_inputs(all_layers_corners, anchors, pre_boxes)
        gt = GroundTruth(gts, metas, cls.device)
        agnostic = copy.deepcopy(gts)
        for g in agnostic:
            g.labels = torch.zeros_like(g.labels)
        vote = ((enc_topk_class, enc_topk_coord, agnostic) if enc_topk_class is not None else None)
        losses, _, _ = self._matching_losses(
            cls, boxes, all_layers_corners, anchors, pre_boxes, gt, gts, metas, enc_vote=vote)
        if enc_outputs_class is not None:
            losses.update(
                self._encoder_losses(enc_outputs_class, enc_outputs_coord, agnostic, metas))
        return self._finite(losses)

    def _encoder_losses(self, enc_cls: Tensor, enc_boxes: Tensor, agnostic: InstanceList,
                        metas: List[dict]) -> Dict[str, Tensor]:
        """The host's encoder loss (every token, own class-agnostic match, the
        host's normalisers), with classification through the head's loss
        switch, so VFL works here as well."""
        match = hungarian(self.assigner, enc_cls, enc_boxes, agnostic, metas)
        gt = GroundTruth(agnostic, metas, enc_cls.device)
        avg = rank_mean(enc_cls, match[0].numel())
        bbox, iou = box_losses(self, enc_boxes, match, gt, avg)
        return dict(
            enc_loss_cls=classification_loss(self, enc_cls, match, gt, enc_boxes),
            enc_loss_bbox=bbox,
            enc_loss_iou=iou)
