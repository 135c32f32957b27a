"""One-to-one matches per decoder output and their GO union, for the GO-LSD heads.

A match is an index triple ``(b, q, g)``: image, query, ground truth within
the image. The host's Hungarian assigner gives each output its own matches;
the GO union of several outputs' matches (D-FINE, arXiv:2410.13842, Sec. 3.3)
supervises the boxes and weights DDF.
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from mmdet.utils import InstanceList, reduce_mean
from mmengine.structures import InstanceData
from torch import Tensor

from ..functional import cxcywh_to_xyxy, go_union, stack_matches

__all__ = ['GroundTruth', 'Triple', 'rank_mean', 'hungarian', 'GOMatches', 'go_matches']

Triple = Tuple[Tensor, Tensor, Tensor]


def rank_mean(like: Tensor, value: float) -> float:
    """``value`` averaged over the ranks (a collective on every rank), at least 1."""
    return max(float(reduce_mean(like.new_tensor([float(value)]))), 1.0)


class GroundTruth:
    """Ground truth of a batch, flattened for vectorised indexing.

    Attributes:
        counts (list[int]): Boxes per image.
        factors (Tensor): ``(B, 4)`` ``w, h, w, h`` of each image.
        xyxy, cxcywh (Tensor): ``(G, 4)`` normalised boxes of all images.
        labels (Tensor): ``(G,)`` class indices.
    """

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
        self.labels = (
            torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long, device=device))

    def rows(self, b: Tensor, g: Tensor) -> Tensor:
        """Rows of the flattened ground truth for matches ``(b, ·, g)``."""
        return self.offsets[b] + g


def hungarian(assigner, cls: Tensor, boxes: Tensor, batch_gt: InstanceList,
              metas: List[dict]) -> Triple:
    """The host assigner's one-to-one match of one output, per image.

    Args:
        assigner: The head's ``HungarianAssigner``.
        cls (Tensor): ``(B, Q, C)`` logits.
        boxes (Tensor): ``(B, Q, 4)`` normalised cxcywh boxes.
        batch_gt (list): ``InstanceData`` per image (pixel xyxy boxes).
        metas (list): Image metas (``img_shape``).

    Returns:
        tuple: ``(b, q, g)`` long tensors; NaN scores or boxes cannot reach the
        assigner's costs.
    """
    per_image = []
    for score, box, gt, meta in zip(cls, boxes, batch_gt, metas):
        if len(gt) == 0 or box.shape[0] == 0:
            empty = torch.zeros(0, dtype=torch.long, device=cls.device)
            per_image.append((empty, empty))
            continue
        h, w = meta['img_shape'][:2]
        xyxy = cxcywh_to_xyxy(box.detach().float().nan_to_num(0.5)) * box.new_tensor([w, h, w, h
                                                                                      ]).float()
        pred = InstanceData(scores=score.detach().float().nan_to_num(0.0), bboxes=xyxy)
        result = assigner.assign(pred_instances=pred, gt_instances=gt, img_meta=meta)
        q = torch.nonzero(result.gt_inds > 0, as_tuple=False).squeeze(-1).unique()
        per_image.append((q, result.gt_inds[q] - 1))
    return stack_matches(per_image, cls.device)


class GOMatches(NamedTuple):
    """Each output's own match and the GO union of them all."""

    #: own match of every decoder layer
    layers: List[Triple]
    #: own match of the pre boxes (with layer 0's logits)
    pre: Triple
    #: own match of the query-aligned encoder top-k, if any
    enc: Optional[Triple]
    #: GO union, order last, aux 0..L−2, pre, encoder, votes
    union: Triple


def go_matches(
    assigner,
    cls: Tensor,
    boxes: Tensor,
    pre_boxes: Tensor,
    batch_gt: InstanceList,
    metas: List[dict],
    enc: Optional[Tuple[Tensor, Tensor]] = None,
    votes: Sequence[Tuple[Tensor, Tensor, InstanceList]] = ()
) -> GOMatches:
    """Match every output one-to-one and take the GO union.

    Args:
        assigner: The head's ``HungarianAssigner``.
        cls, boxes (Tensor): ``(L, B, Q, ·)`` logits and boxes of every layer.
        pre_boxes (Tensor): ``(B, Q, 4)``, matched with layer 0's logits.
        batch_gt (list), metas (list): As :func:`hungarian`.
        enc (tuple, optional): Query-aligned encoder top-k ``(cls, boxes)``:
            matched on its own and voting.
        votes (sequence): ``(cls, boxes, gt_instances)`` outputs that only vote
            (e.g. class-agnostic proposals).

    Returns:
        GOMatches: The own matches and the union.
    """
    own = [hungarian(assigner, cls[i], boxes[i], batch_gt, metas) for i in range(cls.shape[0])]
    own_pre = hungarian(assigner, cls[0], pre_boxes, batch_gt, metas)
    sets = [own[-1]] + own[:-1] + [own_pre]
    own_enc = None
    if enc is not None:
        own_enc = hungarian(assigner, enc[0], enc[1], batch_gt, metas)
        sets.append(own_enc)
    for v_cls, v_boxes, v_gt in votes:
        sets.append(hungarian(assigner, v_cls, v_boxes, v_gt, metas))
    return GOMatches(own, own_pre, own_enc, go_union(sets))
