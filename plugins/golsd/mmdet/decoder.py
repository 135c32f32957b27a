"""FDR decoders for mmdet's DINO and Deformable-DETR.

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

__all__ = ['GOLSDDinoTransformerDecoder', 'GOLSDDeformableDetrTransformerDecoder', 'fdr_config']


def _check(reg_branches, pre_head) -> None:
    if reg_branches is None or pre_head is None:
        raise ValueError('the FDR decoder needs reg_branches and pre_head (use the '
                         'GO-LSD detector together with its GO-LSD head)')


class _FDRRun:
    """State of one forward pass through the FDR recurrence."""

    def __init__(self, fdr: FDRRefiner, reference_points: Tensor, reg_branches: nn.Module,
                 pre_head: nn.Module, eps: float) -> None:
        self.fdr, self.reg_branches, self.pre_head, self.eps = fdr, reg_branches, pre_head, eps
        self.ref = reference_points.detach()
        self.refs: List[Tensor] = [self.ref]
        self.hidden: List[Tensor] = []
        self.corners: List[Tensor] = []
        self.boxes: List[Tensor] = []
        self.acc = self.h_prev = self.anchors = self.pre_boxes = None

    def after_layer(self, lid: int, query: Tensor, hidden: Tensor) -> Tensor:
        """FDR step on layer ``lid``'s un-normed output; returns the next reference."""
        if lid == 0:
            self.pre_boxes = self.fdr.pre_box(self.pre_head, query, self.ref, eps=self.eps)
            self.anchors = self.pre_boxes.detach()
        self.acc, box = self.fdr.step(self.reg_branches[lid], query, self.h_prev, self.acc,
                                      self.anchors)
        self.hidden.append(hidden)
        self.corners.append(self.acc)
        self.boxes.append(box)
        self.ref = box.detach()
        self.refs.append(self.ref)
        self.h_prev = query
        return self.ref

    def outputs(self) -> Dict[str, Tensor]:
        return dict(
            hidden_states=torch.stack(self.hidden),
            references=self.refs,
            all_layers_corners=torch.stack(self.corners),
            all_layers_boxes=torch.stack(self.boxes),
            anchors=self.anchors,
            pre_boxes=self.pre_boxes)


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

    def forward(self,
                query: Tensor,
                value: Tensor,
                key_padding_mask: Tensor,
                self_attn_mask: Tensor,
                reference_points: Tensor,
                spatial_shapes: Tensor,
                level_start_index: Tensor,
                valid_ratios: Tensor,
                reg_branches: nn.ModuleList,
                pre_head: Optional[nn.Module] = None,
                **kwargs) -> Dict[str, Tensor]:
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
        run = _FDRRun(self.fdr, reference_points, reg_branches, pre_head, eps=1e-3)
        ref = run.ref
        for lid, layer in enumerate(self.layers):
            ref_input = _ref_input(ref, valid_ratios)
            query_pos = self.ref_point_head(
                coordinate_to_encoding(ref_input[:, :, 0, :], num_feats=self.embed_dims // 2))
            query = layer(
                query,
                query_pos=query_pos,
                value=value,
                key_padding_mask=key_padding_mask,
                self_attn_mask=self_attn_mask,
                spatial_shapes=spatial_shapes,
                level_start_index=level_start_index,
                valid_ratios=valid_ratios,
                reference_points=ref_input,
                **kwargs)
            ref = run.after_layer(lid, query, self.norm(query))
        return run.outputs()


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

    def forward(self,
                query: Tensor,
                query_pos: Tensor,
                value: Tensor,
                key_padding_mask: Tensor,
                reference_points: Tensor,
                spatial_shapes: Tensor,
                level_start_index: Tensor,
                valid_ratios: Tensor,
                reg_branches: Optional[nn.Module] = None,
                pre_head: Optional[nn.Module] = None,
                **kwargs) -> Dict[str, Tensor]:
        """As :meth:`GOLSDDinoTransformerDecoder.forward`; ``references[0]``
        may be 2-D here.

        Raises:
            ValueError: Without ``reg_branches`` (box refinement) or
                ``pre_head``.
        """
        _check(reg_branches, pre_head)
        run = _FDRRun(self.fdr, reference_points, reg_branches, pre_head, eps=1e-5)
        ref = run.ref
        output = query
        for lid, layer in enumerate(self.layers):
            ref_input = _ref_input(ref, valid_ratios)
            output = layer(
                output,
                query_pos=query_pos,
                value=value,
                key_padding_mask=key_padding_mask,
                spatial_shapes=spatial_shapes,
                level_start_index=level_start_index,
                valid_ratios=valid_ratios,
                reference_points=ref_input,
                **kwargs)
            ref = run.after_layer(lid, output, output)  # no final norm in this host
        return run.outputs()
