"""GO-LSD DINO head: FDR branches, GO matching union, FGL and DDF losses.

Classification keeps each output's own one-to-one match;
box losses (L1, GIoU, FGL) and DDF weights use the GO union of the matches of
the last layer, the auxiliary layers, the pre boxes and the encoder top-k.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Tuple

import torch
import copy

from mmdet.models.dense_heads import DeformableDETRHead, DINOHead
from mmdet.models.losses import FocalLoss, QualityFocalLoss, VarifocalLoss
from mmdet.models.utils import multi_apply
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_overlaps, bbox_xyxy_to_cxcywh
from mmdet.utils import InstanceList, reduce_mean
from mmengine.logging import print_log
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ...core.options import check_keys, merge_options
from ..functional import (aligned_iou, box_to_distance, cxcywh_to_xyxy, fdr_layer_losses,
                          go_union, lqe_statistics, two_bin_targets, weighting_function)
from .fdr import fdr_config

__all__ = ['GOLSDHeadMixin', 'GOLSDDINOHead', 'GOLSDDeformableDETRHead', 'LocationQuality']

Triple = Tuple[Tensor, Tensor, Tensor]


def _mlp(dims: int, out: int, depth: int) -> nn.Sequential:
    layers: List[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(dims, dims), nn.ReLU()]
    layers.append(nn.Linear(dims, out))
    return nn.Sequential(*layers)


class LocationQuality(nn.Module):
    """The optional LQE term: ``scores + MLP(lqe_statistics(Z_i))``, one
    score added to every class logit of a query; the MLP's last layer starts
    at zero, so switching it on leaves the initial logits unchanged.

    Args:
        k (int): Top bins per edge (4).
        hidden (int): MLP width (64).
    """

    def __init__(self, k: int = 4, hidden: int = 64) -> None:
        super().__init__()
        self.k = k
        self.mlp = nn.Sequential(nn.Linear(4 * (k + 1), hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))
        self.zero_last()

    def zero_last(self) -> None:
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, scores: Tensor, corners: Tensor) -> Tensor:
        """``(B, Q, C)`` logits, ``(B, Q, 4(R+1))`` corner logits → ``(B, Q, C)``."""
        stats = lqe_statistics(corners, self.k).to(self.mlp[0].weight.dtype)
        return scores + self.mlp(stats).to(scores.dtype)


def _rank_mean(like: Tensor, value: float) -> float:
    """``value`` averaged over the ranks (a collective on every rank), at least 1."""
    return max(float(reduce_mean(like.new_tensor([float(value)]))), 1.0)


class _GT:
    """Ground truth of a batch, flattened for vectorised indexing."""

    def __init__(self, batch_gt_instances: InstanceList, batch_img_metas: List[dict],
                 device: torch.device) -> None:
        sizes = [len(g) for g in batch_gt_instances]
        self.counts = sizes
        self.offsets = torch.tensor([0] + sizes[:-1], device=device).cumsum(0)
        factors, boxes, labels = [], [], []
        for gt, meta in zip(batch_gt_instances, batch_img_metas):
            h, w = meta['img_shape'][:2]
            factor = gt.bboxes.new_tensor([w, h, w, h])
            factors.append(factor)
            boxes.append(gt.bboxes / factor)
            labels.append(gt.labels)
        self.factors = torch.stack(factors) if factors else torch.ones(0, 4, device=device)
        self.xyxy = torch.cat(boxes) if boxes else torch.zeros(0, 4, device=device)
        self.cxcywh = bbox_xyxy_to_cxcywh(self.xyxy)
        self.labels = (torch.cat(labels) if labels
                       else torch.zeros(0, dtype=torch.long, device=device))

    def rows(self, b: Tensor, g: Tensor) -> Tensor:
        return self.offsets[b] + g


class GOLSDHeadMixin:
    """FDR branches and GO-LSD losses for DETR heads with box refinement.

    Mixed in before the host head class. Args (keyword, consumed here):
        golsd (dict): ``reg_max``, ``reg_scale``, ``up``, ``T`` (set by the
            GO-LSD detector).
        loss_fgl (dict): ``loss_weight`` of FGL (0.15).
        loss_ddf (dict): ``loss_weight`` of DDF (1.5).
        nan_to_num (bool): Replace non-finite loss values by 0 and log it, as
            the reference does. Off by default: the gradients of such a loss
            are NaN all the same, so a zeroed value only hides the divergence.
            The core's ``NonFiniteSkipOptimWrapper`` skips the step instead
            and the log shows the real (NaN) values.
        lqe (dict, optional): Add the location-quality term to every decoder
            layer's class logits (``k`` 4, ``hidden`` 64); off by default. The
            DDF teacher logits then include it.
    """

    def __init__(self, *args, golsd: Optional[Dict] = None,
                 loss_fgl: Optional[Dict] = None, loss_ddf: Optional[Dict] = None,
                 nan_to_num: bool = False, lqe: Optional[Dict] = None, **kwargs) -> None:
        self.golsd = fdr_config(golsd)
        self.lqe_cfg = dict(lqe) if lqe is not None else None
        check_keys(lqe, ('k', 'hidden'), 'bbox_head.lqe')
        self.fgl_weight = float(merge_options(dict(loss_weight=0.15), loss_fgl,
                                              'bbox_head.loss_fgl')['loss_weight'])
        self.ddf_weight = float(merge_options(dict(loss_weight=1.5), loss_ddf,
                                              'bbox_head.loss_ddf')['loss_weight'])
        self.nan_to_num = nan_to_num
        super().__init__(*args, **kwargs)
        if isinstance(self.loss_cls, FocalLoss):
            print_log(f'{type(self).__name__}: classification with FocalLoss. The box losses '
                      'use the one-to-many GO matches, and Focal scores then rank the extra '
                      'well-placed queries (duplicates) above true positives; the reference '
                      "trains with VarifocalLoss (loss_cls=dict(type='VarifocalLoss', "
                      "use_sigmoid=True, alpha=0.75, gamma=2.0, iou_weighted=True)), see "
                      'docs/golsd.md', logger='current', level=logging.WARNING)
        self.register_buffer('project', weighting_function(
            self.golsd['reg_max'], self.golsd['reg_scale'], self.golsd['up']).float(),
            persistent=False)

    # ------------------------------------------------------------------ layers
    @property
    def num_fdr_layers(self) -> int:
        """Decoder layers (the extra branch, if any, serves the encoder)."""
        return self.num_pred_layer - 1 if self.as_two_stage else self.num_pred_layer

    def _init_layers(self) -> None:
        super()._init_layers()
        n_out = 4 * (self.golsd['reg_max'] + 1)
        branches = [_mlp(self.embed_dims, n_out, self.num_reg_fcs)
                    for _ in range(self.num_fdr_layers)]
        branches += list(self.reg_branches[self.num_fdr_layers:])  # encoder: 4 outputs
        self.reg_branches = nn.ModuleList(branches)
        self.pre_head = _mlp(self.embed_dims, 4, self.num_reg_fcs)
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
    def forward(self, hidden_states: Tensor, references: List[Tensor],
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

    def predict(self, hidden_states: Tensor, references: List[Tensor],
                batch_data_samples: SampleList, rescale: bool = True,
                all_layers_boxes: Optional[Tensor] = None,
                all_layers_corners: Optional[Tensor] = None, **kwargs) -> InstanceList:
        metas = [s.metainfo for s in batch_data_samples]
        outs = self(hidden_states, references, all_layers_boxes=all_layers_boxes,
                    all_layers_corners=all_layers_corners)
        return self.predict_by_feat(*outs, batch_img_metas=metas, rescale=rescale)

    # ----------------------------------------------------------------- matching
    def _hungarian(self, cls: Tensor, boxes: Tensor, batch_gt: InstanceList,
                   metas: List[dict]) -> Triple:
        """Host assigner per image → ``(b, q, g)``; NaN costs cannot occur."""
        bs, qs, gs = [], [], []
        for b, (score, box, gt, meta) in enumerate(zip(cls, boxes, batch_gt, metas)):
            if len(gt) == 0 or box.shape[0] == 0:
                continue
            h, w = meta['img_shape'][:2]
            xyxy = cxcywh_to_xyxy(box.detach().float().nan_to_num(0.5)) * box.new_tensor(
                [w, h, w, h]).float()
            pred = InstanceData(scores=score.detach().float().nan_to_num(0.0), bboxes=xyxy)
            result = self.assigner.assign(pred_instances=pred, gt_instances=gt,
                                          img_meta=meta)
            q = torch.nonzero(result.gt_inds > 0, as_tuple=False).squeeze(-1).unique()
            bs.append(torch.full_like(q, b))
            qs.append(q)
            gs.append(result.gt_inds[q] - 1)
        if not bs:
            e = torch.zeros(0, dtype=torch.long, device=cls.device)
            return e, e, e
        return torch.cat(bs), torch.cat(qs), torch.cat(gs).long()

    # ------------------------------------------------------------------- losses
    def _cls_loss(self, cls: Tensor, match: Triple, gt: _GT, boxes: Tensor) -> Tensor:
        """Host classification loss with the given one-to-one match."""
        b, q, g = match
        bsz, nq, nc = cls.shape
        labels = torch.full((bsz, nq), self.num_classes, dtype=torch.long, device=cls.device)
        rows = gt.rows(b, g)
        labels[b, q] = gt.labels[rows]
        weights = torch.ones(bsz * nq, device=cls.device, dtype=cls.dtype)
        num_pos = b.numel()
        avg = num_pos * 1.0 + (bsz * nq - num_pos) * self.bg_cls_weight
        if self.sync_cls_avg_factor:
            avg = reduce_mean(cls.new_tensor([avg]))
        avg = max(float(avg), 1.0)
        flat = cls.reshape(-1, nc)
        if flat.shape[0] == 0:
            return cls.sum() * 0
        if isinstance(self.loss_cls, VarifocalLoss):
            # VFL of the reference: target IoU·onehot (detached), negatives
            # weighted by alpha·sigmoid^gamma, summed over Q·C entries / #GT
            target = torch.zeros_like(flat)
            if num_pos:
                with torch.no_grad():
                    iou = aligned_iou(cxcywh_to_xyxy(boxes[b, q].float()),
                                      gt.xyxy[rows].float())
                target[b * nq + q, labels[b, q]] = iou.to(flat.dtype)
            return self.loss_cls(flat, target, avg_factor=avg)
        if isinstance(self.loss_cls, QualityFocalLoss):
            scores = torch.zeros(bsz, nq, device=cls.device, dtype=cls.dtype)
            if num_pos:
                scores[b, q] = bbox_overlaps(
                    cxcywh_to_xyxy(boxes[b, q].detach()), gt.xyxy[rows],
                    is_aligned=True).to(cls.dtype)
            return self.loss_cls(flat, (labels.reshape(-1), scores.reshape(-1)),
                                 weight=weights, avg_factor=avg)
        return self.loss_cls(flat, labels.reshape(-1), weights, avg_factor=avg)

    def _box_losses(self, boxes: Tensor, match: Triple, gt: _GT,
                    avg: float) -> Tuple[Tensor, Tensor]:
        """L1 (normalised cxcywh) and GIoU (pixels, w/h clamped ≥ 0)."""
        b, q, g = match
        if b.numel() == 0:
            zero = boxes.sum() * 0
            return zero, zero
        rows = gt.rows(b, g)
        pred = boxes[b, q]
        loss_bbox = self.loss_bbox(pred, gt.cxcywh[rows].to(pred.dtype), avg_factor=avg)
        factor = gt.factors[b].to(pred.dtype)
        loss_iou = self.loss_iou(cxcywh_to_xyxy(pred) * factor,
                                 (gt.xyxy[rows] * gt.factors[b]).to(pred.dtype),
                                 avg_factor=avg)
        return loss_bbox, loss_iou

    def _fgl_targets(self, anchors: Tensor, match: Triple, gt: _GT):
        """Two-bin targets of the matched pairs, once per forward, in fp32."""
        b, q, g = match
        with torch.no_grad():
            phi = box_to_distance(anchors[b, q].float(), gt.xyxy[gt.rows(b, g)].float(),
                                  self.golsd['reg_scale'])
            return two_bin_targets(phi, self.project.float())

    def _fdr_losses(self, corners: Tensor, boxes: Tensor, cls_last: Tensor, match: Triple,
                    gt: _GT, targets, avg: float, counts: Optional[Tuple[int, int]],
                    dn: str = '') -> Dict[str, Tensor]:
        """FGL for every layer and DDF for layers ``0..L−2`` of one part, all
        layers in one batched computation (:func:`fdr_layer_losses`)."""
        b, q, g = match
        num_layers = corners.shape[0]
        with torch.autocast(device_type=corners.device.type, enabled=False):
            conf = cls_last.detach().float().sigmoid().max(-1).values  # (B, Q)
            fgl, ddf = fdr_layer_losses(corners.float(), boxes, conf, b, q,
                                        gt.xyxy[gt.rows(b, g)], targets, avg, counts,
                                        self.golsd['T'])
        out: Dict[str, Tensor] = {}
        ddf_per_layer = ddf.unbind(0)
        for i, value in enumerate(fgl.unbind(0)):
            key = 'loss' if i == num_layers - 1 else f'd{i}.loss'
            key = key.replace('loss', dn + 'loss')
            out[f'{key}_fgl'] = self.fgl_weight * value
            if i < num_layers - 1:
                out[f'{key}_ddf'] = self.ddf_weight * ddf_per_layer[i]
        return out

    def _matching_losses(self, cls_m: Tensor, box_m: Tensor, cor_m: Tensor, anc_m: Tensor,
                         pre_m: Tensor, gt: _GT, batch_gt_instances: InstanceList,
                         batch_img_metas: List[dict], enc: Optional[Tuple[Tensor, Tensor]] = None,
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
        args = (batch_gt_instances, batch_img_metas)
        num_layers = cls_m.shape[0]
        own = [self._hungarian(cls_m[i], box_m[i], *args) for i in range(num_layers)]
        own_pre = self._hungarian(cls_m[0], pre_m, *args)
        sets = [own[-1]] + own[:-1] + [own_pre]
        own_enc = None
        if enc is not None:
            own_enc = self._hungarian(enc[0], enc[1], *args)
            sets.append(own_enc)
        if enc_vote is not None:
            sets.append(self._hungarian(enc_vote[0], enc_vote[1], enc_vote[2],
                                        batch_img_metas))
        go = go_union(sets)  # order: last, aux 0..L-2, pre, encoder
        n_go = _rank_mean(cls_m, go[0].numel())
        # logged, not a loss: how one-to-many the box supervision is (1 = one-to-one)
        losses: Dict[str, Tensor] = dict(go_queries_per_gt=cls_m.new_tensor(
            go[0].numel() / max(sum(gt.counts), 1)).detach())
        for i in range(num_layers):
            key = 'loss' if i == num_layers - 1 else f'd{i}.loss'
            losses[f'{key}_cls'] = self._cls_loss(cls_m[i], own[i], gt, box_m[i])
            losses[f'{key}_bbox'], losses[f'{key}_iou'] = self._box_losses(box_m[i], go, gt,
                                                                          n_go)
        losses['pre_loss_cls'] = self._cls_loss(cls_m[0], own_pre, gt, pre_m)
        losses['pre_loss_bbox'], losses['pre_loss_iou'] = self._box_losses(pre_m, go, gt, n_go)
        if own_enc is not None:
            losses['enc_loss_cls'] = self._cls_loss(enc[0], own_enc, gt, enc[1])
            losses['enc_loss_bbox'], losses['enc_loss_iou'] = self._box_losses(
                enc[1], go, gt, n_go)
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
            print_log(f'GO-LSD: non-finite losses replaced by 0: {names}',
                      logger='current', level=logging.WARNING)
            losses = {k: (v.nan_to_num(0.0, 0.0, 0.0) if k in names else v)
                      for k, v in losses.items()}
        return losses


@MODELS.register_module()
class GOLSDDINOHead(GOLSDHeadMixin, DINOHead):
    """DINO head with FDR regression branches and GO-LSD losses.

    Args:
        golsd, loss_fgl, loss_ddf, nan_to_num, lqe: see :class:`GOLSDHeadMixin`.
        *args, **kwargs: As :class:`DINOHead`.
    """

    def loss(self, hidden_states: Tensor, references: List[Tensor],
             enc_outputs_class: Tensor, enc_outputs_coord: Tensor,
             batch_data_samples: SampleList, dn_meta: Optional[Dict[str, int]],
             all_layers_corners: Optional[Tensor] = None,
             all_layers_boxes: Optional[Tensor] = None,
             anchors: Optional[Tensor] = None, pre_boxes: Optional[Tensor] = None,
             **kwargs) -> Dict[str, Tensor]:
        gts = [s.gt_instances for s in batch_data_samples]
        metas = [s.metainfo for s in batch_data_samples]
        cls, boxes = self(hidden_states, references, all_layers_boxes=all_layers_boxes,
                          all_layers_corners=all_layers_corners)
        return self.loss_by_feat(cls, boxes, enc_outputs_class, enc_outputs_coord,
                                 gts, metas, dn_meta, all_layers_corners=all_layers_corners,
                                 anchors=anchors, pre_boxes=pre_boxes)

    def loss_by_feat(self, all_layers_cls_scores: Tensor, all_layers_bbox_preds: Tensor,
                     enc_cls_scores: Tensor, enc_bbox_preds: Tensor,
                     batch_gt_instances: InstanceList, batch_img_metas: List[dict],
                     dn_meta: Optional[Dict[str, int]],
                     batch_gt_instances_ignore=None, all_layers_corners: Tensor = None,
                     anchors: Tensor = None, pre_boxes: Tensor = None) -> Dict[str, Tensor]:
        """All losses; every key is present on every step (DDP-safe).

        Raises:
            ValueError: If the FDR outputs (corners, anchors, pre boxes) are
                missing.
        """
        self._check_fdr_inputs(all_layers_corners, anchors, pre_boxes)
        num_dn = int(dn_meta['num_denoising_queries']) if dn_meta else 0
        cls_all, box_all, cor_all = (all_layers_cls_scores, all_layers_bbox_preds,
                                     all_layers_corners)
        gt = _GT(batch_gt_instances, batch_img_metas, cls_all.device)
        enc = (enc_cls_scores, enc_bbox_preds) if enc_cls_scores is not None else None
        losses, _, counts = self._matching_losses(
            cls_all[:, :, num_dn:], box_all[:, :, num_dn:], cor_all[:, :, num_dn:],
            anchors[:, num_dn:], pre_boxes[:, num_dn:], gt, batch_gt_instances,
            batch_img_metas, enc=enc)
        losses.update(self._dn_losses(cls_all, box_all, cor_all, anchors, pre_boxes,
                                      num_dn, dn_meta, gt, counts, batch_gt_instances,
                                      batch_img_metas))
        return self._finite(losses)

    def _dn_match(self, batch_gt_instances: InstanceList, batch_img_metas: List[dict],
                  dn_meta: Dict[str, int], gt: _GT) -> Triple:
        """The fixed denoising matches ``(b, q, g)``: the host's positive
        queries of each image, paired with its ground truths once per group."""
        pos = multi_apply(self._get_dn_targets_single, batch_gt_instances, batch_img_metas,
                          dn_meta=dn_meta)[4]
        groups = int(dn_meta['num_denoising_groups'])
        bs, qs, gs = [], [], []
        for b, (p, g_count) in enumerate(zip(pos, gt.counts)):
            bs.append(torch.full_like(p, b))
            qs.append(p)
            gs.append(torch.arange(g_count, device=p.device).repeat(groups))
        return torch.cat(bs), torch.cat(qs), torch.cat(gs)

    def _dn_losses(self, cls_all, box_all, cor_all, anchors, pre_boxes, num_dn, dn_meta,
                   gt: _GT, counts, batch_gt_instances, batch_img_metas) -> Dict[str, Tensor]:
        num_layers = cls_all.shape[0]
        keys = (['dn_loss_cls', 'dn_loss_bbox', 'dn_loss_iou', 'dn_loss_fgl'] +
                [f'd{i}.dn_loss_{k}' for i in range(num_layers - 1)
                 for k in ('cls', 'bbox', 'iou', 'fgl', 'ddf')] +
                ['dn_pre_loss_cls', 'dn_pre_loss_bbox', 'dn_pre_loss_iou'])
        zero = cls_all.sum() * 0 + box_all.sum() * 0 + cor_all.sum() * 0
        if dn_meta is None:  # no denoising at all (same on every rank)
            return {k: zero for k in keys}
        # A rank without ground truth has num_dn == 0 while others may not: the
        # same code path (and so the same collectives) runs on empty tensors.
        cls_d, box_d, cor_d = cls_all[:, :, :num_dn], box_all[:, :, :num_dn], cor_all[:, :, :num_dn]
        match = self._dn_match(batch_gt_instances, batch_img_metas, dn_meta, gt)
        # box normaliser of the host's denoising part: rank-averaged positives
        avg_box = _rank_mean(cls_all, match[0].numel())
        out: Dict[str, Tensor] = {}
        outputs = [(f'd{i}.dn_loss', cls_d[i], box_d[i]) for i in range(num_layers - 1)]
        outputs += [('dn_loss', cls_d[-1], box_d[-1]),
                    ('dn_pre_loss', cls_d[0], pre_boxes[:, :num_dn])]
        for key, cls, boxes in outputs:
            # classification through the head's own loss switch (Focal, VFL, QFL)
            out[f'{key}_cls'] = self._cls_loss(cls, match, gt, boxes)
            out[f'{key}_bbox'], out[f'{key}_iou'] = self._box_losses(boxes, match, gt, avg_box)
        # FGL normaliser of the reference: rank-averaged #GT (>= 1) x local groups
        groups = int(dn_meta['num_denoising_groups'])
        n_gt = _rank_mean(cls_all, sum(gt.counts))
        targets = self._fgl_targets(anchors[:, :num_dn], match, gt)
        out.update(self._fdr_losses(cor_d, box_d, cls_d[-1], match, gt, targets, n_gt * groups,
                                    counts, 'dn_'))
        missing = [k for k in keys if k not in out]
        assert not missing, missing
        # the host returns a detached torch.zeros(1) for an empty DN part
        return {k: (v.sum() if v.requires_grad else zero) for k, v in out.items()}


@MODELS.register_module()
class GOLSDDeformableDETRHead(GOLSDHeadMixin, DeformableDETRHead):
    """Deformable-DETR (box refinement) head with FDR branches and GO-LSD.

    The encoder loss stays the host's (all encoder tokens, class-agnostic);
    with two-stage, the top-k proposals in decoder-query order join the GO
    vote, matched against class-agnostic ground truth as the encoder is trained.

    Args:
        golsd, loss_fgl, loss_ddf, nan_to_num, lqe: see :class:`GOLSDHeadMixin`.
        *args, **kwargs: As :class:`DeformableDETRHead`.
    """

    def loss(self, hidden_states: Tensor, references: List[Tensor],
             enc_outputs_class: Optional[Tensor], enc_outputs_coord: Optional[Tensor],
             batch_data_samples: SampleList, all_layers_corners: Optional[Tensor] = None,
             all_layers_boxes: Optional[Tensor] = None, anchors: Optional[Tensor] = None,
             pre_boxes: Optional[Tensor] = None, enc_topk_class: Optional[Tensor] = None,
             enc_topk_coord: Optional[Tensor] = None, **kwargs) -> Dict[str, Tensor]:
        gts = [s.gt_instances for s in batch_data_samples]
        metas = [s.metainfo for s in batch_data_samples]
        cls, boxes = self(hidden_states, references, all_layers_boxes=all_layers_boxes,
                          all_layers_corners=all_layers_corners)
        self._check_fdr_inputs(all_layers_corners, anchors, pre_boxes)
        gt = _GT(gts, metas, cls.device)
        agnostic = copy.deepcopy(gts)
        for g in agnostic:
            g.labels = torch.zeros_like(g.labels)
        vote = ((enc_topk_class, enc_topk_coord, agnostic)
                if enc_topk_class is not None else None)
        losses, _, _ = self._matching_losses(cls, boxes, all_layers_corners, anchors,
                                             pre_boxes, gt, gts, metas, enc_vote=vote)
        if enc_outputs_class is not None:
            losses.update(self._encoder_losses(enc_outputs_class, enc_outputs_coord,
                                               agnostic, metas))
        return self._finite(losses)

    def _encoder_losses(self, enc_cls: Tensor, enc_boxes: Tensor, agnostic: InstanceList,
                        metas: List[dict]) -> Dict[str, Tensor]:
        """The host's encoder loss (every token, own class-agnostic match, the
        host's normalisers), with classification through the head's loss
        switch, so VFL works here as well."""
        match = self._hungarian(enc_cls, enc_boxes, agnostic, metas)
        gt = _GT(agnostic, metas, enc_cls.device)
        avg = _rank_mean(enc_cls, match[0].numel())
        bbox, iou = self._box_losses(enc_boxes, match, gt, avg)
        return dict(enc_loss_cls=self._cls_loss(enc_cls, match, gt, enc_boxes),
                    enc_loss_bbox=bbox, enc_loss_iou=iou)
