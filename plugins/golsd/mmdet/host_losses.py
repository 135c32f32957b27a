"""The host head's classification and box losses, evaluated on given matches.

mmdet's DETR heads compute their losses from their own assignment; the GO-LSD
heads choose the matches themselves (each output's own one-to-one match for
classification, the GO union for the boxes) and call the host's loss modules
here, with the host's normalisers.
"""
from __future__ import annotations

from typing import Tuple

import torch
from mmdet.models.losses import QualityFocalLoss, VarifocalLoss
from mmdet.structures.bbox import bbox_overlaps
from mmdet.utils import reduce_mean
from torch import Tensor

from ..functional import aligned_iou, cxcywh_to_xyxy
from .matching import GroundTruth, Triple

__all__ = ['classification_loss', 'box_losses']


def classification_loss(head, cls: Tensor, match: Triple, gt: GroundTruth, boxes: Tensor) -> Tensor:
    """``head.loss_cls`` of one output with the given one-to-one match.

    The target follows the loss type: VarifocalLoss gets D-FINE's IoU-aware
    target (IoU of the matched box at its class, detached), QualityFocalLoss
    mmdet's ``(labels, IoU)`` pair, anything else (Focal) the labels.

    Args:
        head: The host head (``loss_cls``, ``num_classes``, ``bg_cls_weight``,
            ``sync_cls_avg_factor``).
        cls (Tensor): ``(B, Q, C)`` logits.
        match (tuple): ``(b, q, g)``.
        gt (GroundTruth): The batch's ground truth.
        boxes (Tensor): ``(B, Q, 4)`` cxcywh boxes of the same output (for
            the IoU-aware targets).

    Returns:
        Tensor: Scalar.
    """
    b, q, g = match
    bsz, nq, nc = cls.shape
    labels = torch.full((bsz, nq), head.num_classes, dtype=torch.long, device=cls.device)
    rows = gt.rows(b, g)
    labels[b, q] = gt.labels[rows]
    num_pos = b.numel()
    avg = num_pos * 1.0 + (bsz * nq - num_pos) * head.bg_cls_weight
    if head.sync_cls_avg_factor:
        avg = reduce_mean(cls.new_tensor([avg]))
    avg = max(float(avg), 1.0)
    flat = cls.reshape(-1, nc)
    if flat.shape[0] == 0:
        return cls.sum() * 0
    if isinstance(head.loss_cls, VarifocalLoss):
        # D-FINE's VFL: target IoU·onehot (detached), negatives weighted by
        # alpha·sigmoid^gamma, summed over Q·C entries / #GT
        target = torch.zeros_like(flat)
        if num_pos:
            with torch.no_grad():
                iou = aligned_iou(cxcywh_to_xyxy(boxes[b, q].float()), gt.xyxy[rows].float())
            target[b * nq + q, labels[b, q]] = iou.to(flat.dtype)
        return head.loss_cls(flat, target, avg_factor=avg)
    weights = torch.ones(bsz * nq, device=cls.device, dtype=cls.dtype)
    if isinstance(head.loss_cls, QualityFocalLoss):
        scores = torch.zeros(bsz, nq, device=cls.device, dtype=cls.dtype)
        if num_pos:
            scores[b, q] = bbox_overlaps(
                cxcywh_to_xyxy(boxes[b, q].detach()), gt.xyxy[rows], is_aligned=True).to(cls.dtype)
        return head.loss_cls(
            flat, (labels.reshape(-1), scores.reshape(-1)), weight=weights, avg_factor=avg)
    return head.loss_cls(flat, labels.reshape(-1), weights, avg_factor=avg)


def box_losses(head, boxes: Tensor, match: Triple, gt: GroundTruth,
               avg: float) -> Tuple[Tensor, Tensor]:
    """``head.loss_bbox`` (L1 on normalised cxcywh) and ``head.loss_iou``
    (GIoU in pixels, w/h clamped ≥ 0) of the matched boxes.

    Returns:
        tuple: Two scalars; graph-connected zeros without matches.
    """
    b, q, g = match
    if b.numel() == 0:
        zero = boxes.sum() * 0
        return zero, zero
    rows = gt.rows(b, g)
    pred = boxes[b, q]
    loss_bbox = head.loss_bbox(pred, gt.cxcywh[rows].to(pred.dtype), avg_factor=avg)
    factor = gt.factors[b].to(pred.dtype)
    loss_iou = head.loss_iou(
        cxcywh_to_xyxy(pred) * factor, (gt.xyxy[rows] * gt.factors[b]).to(pred.dtype),
        avg_factor=avg)
    return loss_bbox, loss_iou
