"""FDR decoders for mmdet's DINO and Deformable-DETR (spec golsd.md §2.3, §8).

The host layers, positional queries and (DINO) final norm are unchanged; only
the refine step differs. Each layer adds corner-logit increments to an
accumulated distribution (not detached), decoded against one fixed anchor: the
detached layer-0 "pre" box.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
from mmdet.models.layers import (DeformableDetrTransformerDecoder, DinoTransformerDecoder,
                                 coordinate_to_encoding)
from mmdet.registry import MODELS
from torch import Tensor, nn

from .fdr import FDRRefiner, fdr_config

__all__ = ['GOLSDDinoTransformerDecoder', 'GOLSDDeformableDetrTransformerDecoder',
           'fdr_config']


def _check(reg_branches, pre_head) -> None:
    if reg_branches is None or pre_head is None:
        raise ValueError('the FDR decoder needs reg_branches and pre_head (use the '
                         'GO-LSD detector together with its GO-LSD head)')


def _outputs(hidden: List[Tensor], refs: List[Tensor], corners: List[Tensor],
             boxes: List[Tensor], anchors: Tensor, pre_boxes: Tensor) -> Dict:
    return dict(hidden_states=torch.stack(hidden), references=refs,
                all_layers_corners=torch.stack(corners), all_layers_boxes=torch.stack(boxes),
                anchors=anchors, pre_boxes=pre_boxes)


def _ref_input(ref: Tensor, valid_ratios: Tensor) -> Tensor:
    if ref.shape[-1] == 4:
        return ref[:, :, None] * torch.cat([valid_ratios, valid_ratios], -1)[:, None]
    return ref[:, :, None] * valid_ratios[:, None]


class _FDRDecoderMixin:
    """Adds the FDR refiner (``golsd`` settings) to a host decoder."""

    def __init__(self, *args, golsd: Optional[Dict] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fdr = FDRRefiner(golsd)
        self.golsd = self.fdr.golsd


@MODELS.register_module()
class GOLSDDinoTransformerDecoder(_FDRDecoderMixin, DinoTransformerDecoder):
    """DINO decoder with Fine-grained Distribution Refinement.

    Args:
        golsd (dict): ``reg_max`` (R), ``reg_scale`` (c), ``up`` (a), ``T``.
        *args, **kwargs: As :class:`DinoTransformerDecoder`.
    """

    def forward(self, query: Tensor, value: Tensor, key_padding_mask: Tensor,
                self_attn_mask: Tensor, reference_points: Tensor,
                spatial_shapes: Tensor, level_start_index: Tensor,
                valid_ratios: Tensor, reg_branches: nn.ModuleList,
                pre_head: Optional[nn.Module] = None, **kwargs) -> Dict[str, Tensor]:
        """Run the layers with FDR refinement.

        Args:
            query (Tensor): ``(B, Qt, D)``.
            reference_points (Tensor): ``(B, Qt, 4)`` initial boxes, cxcywh.
            reg_branches (nn.ModuleList): FDR branches, ``D → 4(R+1)`` each.
            pre_head (nn.Module): ``D → 4`` head of the layer-0 pre box.
            Others: as the host decoder.

        Returns:
            dict: ``hidden_states (L, B, Qt, D)`` (normed), ``references``
            (list of L+1 ``(B, Qt, 4)``: initial + each detached box),
            ``all_layers_corners (L, B, Qt, 4(R+1))``, ``all_layers_boxes
            (L, B, Qt, 4)``, ``anchors (B, Qt, 4)``, ``pre_boxes (B, Qt, 4)``.

        Raises:
            ValueError: Without ``reg_branches``/``pre_head`` or with 2-D
                references.
        """
        _check(reg_branches, pre_head)
        if reference_points.shape[-1] != 4:
            raise ValueError(f'the DINO FDR decoder needs 4-D reference boxes, got '
                             f'shape {tuple(reference_points.shape)}')
        ref = reference_points.detach()
        hidden, refs, corners, boxes = [], [ref], [], []
        acc = h_prev = anchors = pre_boxes = None
        for lid, layer in enumerate(self.layers):
            ref_input = _ref_input(ref, valid_ratios)
            query_pos = self.ref_point_head(coordinate_to_encoding(
                ref_input[:, :, 0, :], num_feats=self.embed_dims // 2))
            query = layer(query, query_pos=query_pos, value=value,
                          key_padding_mask=key_padding_mask,
                          self_attn_mask=self_attn_mask, spatial_shapes=spatial_shapes,
                          level_start_index=level_start_index,
                          valid_ratios=valid_ratios, reference_points=ref_input,
                          **kwargs)
            if lid == 0:
                pre_boxes = self.fdr.pre_box(pre_head, query, ref, eps=1e-3)
                anchors = pre_boxes.detach()
            acc, box = self.fdr.step(reg_branches[lid], query, h_prev, acc, anchors)
            hidden.append(self.norm(query))
            corners.append(acc)
            boxes.append(box)
            ref = box.detach()
            refs.append(ref)
            h_prev = query
        return _outputs(hidden, refs, corners, boxes, anchors, pre_boxes)


@MODELS.register_module()
class GOLSDDeformableDetrTransformerDecoder(_FDRDecoderMixin, DeformableDetrTransformerDecoder):
    """Deformable-DETR decoder (with box refinement) using FDR.

    With two-stage the initial references are boxes; otherwise they are
    points ``(cx, cy)`` and the pre box takes ``logit(ref)`` on its first two
    outputs only. There is no final norm, as in the host.

    Args:
        golsd (dict): ``reg_max``, ``reg_scale``, ``up``, ``T``.
        *args, **kwargs: As :class:`DeformableDetrTransformerDecoder`.
    """

    def forward(self, query: Tensor, query_pos: Tensor, value: Tensor,
                key_padding_mask: Tensor, reference_points: Tensor,
                spatial_shapes: Tensor, level_start_index: Tensor,
                valid_ratios: Tensor, reg_branches: Optional[nn.Module] = None,
                pre_head: Optional[nn.Module] = None, **kwargs) -> Dict[str, Tensor]:
        """As :meth:`GOLSDDinoTransformerDecoder.forward`; ``references[0]``
        may be 2-D here.

        Raises:
            ValueError: Without ``reg_branches`` (box refinement) or
                ``pre_head``.
        """
        _check(reg_branches, pre_head)
        ref = reference_points.detach()
        hidden, refs, corners, boxes = [], [ref], [], []
        acc = h_prev = anchors = pre_boxes = None
        output = query
        for lid, layer in enumerate(self.layers):
            ref_input = _ref_input(ref, valid_ratios)
            output = layer(output, query_pos=query_pos, value=value,
                           key_padding_mask=key_padding_mask,
                           spatial_shapes=spatial_shapes,
                           level_start_index=level_start_index,
                           valid_ratios=valid_ratios, reference_points=ref_input,
                           **kwargs)
            if lid == 0:
                pre_boxes = self.fdr.pre_box(pre_head, output, ref, eps=1e-5)
                anchors = pre_boxes.detach()
            acc, box = self.fdr.step(reg_branches[lid], output, h_prev, acc, anchors)
            hidden.append(output)
            corners.append(acc)
            boxes.append(box)
            ref = box.detach()
            refs.append(ref)
            h_prev = output
        return _outputs(hidden, refs, corners, boxes, anchors, pre_boxes)
