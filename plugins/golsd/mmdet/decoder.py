"""FDR decoder for mmdet's DINO (spec golsd.md §2.3, §8)."""
from __future__ import annotations

from typing import Dict, Optional

import torch
from mmdet.models.layers import DinoTransformerDecoder, coordinate_to_encoding, inverse_sigmoid
from mmdet.registry import MODELS
from torch import Tensor, nn

from ..functional import decode_corners, distribution_integral, weighting_function

__all__ = ['GOLSDDinoTransformerDecoder', 'fdr_config']

_DEFAULTS = dict(reg_max=32, reg_scale=4.0, up=0.5, T=5.0)


def fdr_config(golsd: Optional[Dict] = None) -> Dict:
    """The GO-LSD settings with defaults filled in.

    Raises:
        ValueError: On an unknown key.
    """
    cfg = dict(_DEFAULTS)
    unknown = set(golsd or {}) - set(cfg)
    if unknown:
        raise ValueError(f'unknown golsd settings {sorted(unknown)}; known: '
                         f'{sorted(cfg)}')
    cfg.update(golsd or {})
    return cfg


@MODELS.register_module()
class GOLSDDinoTransformerDecoder(DinoTransformerDecoder):
    """DINO decoder whose box refinement is Fine-grained Distribution Refinement.

    The host layers, the positional queries and the final norm are unchanged.
    Only the refine step differs: each layer adds corner-logit increments to
    an accumulated distribution (not detached), decoded against one fixed
    anchor, the detached layer-0 "pre" box.

    Args:
        golsd (dict): ``reg_max`` (R), ``reg_scale`` (c), ``up`` (a), ``T``.
        *args, **kwargs: As :class:`DinoTransformerDecoder`.
    """

    def __init__(self, *args, golsd: Optional[Dict] = None, **kwargs) -> None:
        self.golsd = fdr_config(golsd)
        super().__init__(*args, **kwargs)
        project = weighting_function(self.golsd['reg_max'], self.golsd['reg_scale'],
                                     self.golsd['up'], dtype=torch.float64)
        self.register_buffer('project', project.float(), persistent=False)

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
        if reg_branches is None or pre_head is None:
            raise ValueError('the FDR decoder needs reg_branches and pre_head '
                             '(use GOLSDDINO with GOLSDDINOHead)')
        if reference_points.shape[-1] != 4:
            raise ValueError(f'FDR needs 4-D reference boxes, got shape '
                             f'{tuple(reference_points.shape)}')
        c = float(self.golsd['reg_scale'])
        ref = reference_points.detach()
        hidden, refs, corners, boxes = [], [ref], [], []
        acc = None
        h_prev = None
        anchors = pre_boxes = None
        ratios = torch.cat([valid_ratios, valid_ratios], -1)[:, None]
        for lid, layer in enumerate(self.layers):
            ref_input = ref[:, :, None] * ratios
            query_pos = self.ref_point_head(coordinate_to_encoding(
                ref_input[:, :, 0, :], num_feats=self.embed_dims // 2))
            query = layer(query, query_pos=query_pos, value=value,
                          key_padding_mask=key_padding_mask,
                          self_attn_mask=self_attn_mask, spatial_shapes=spatial_shapes,
                          level_start_index=level_start_index,
                          valid_ratios=valid_ratios, reference_points=ref_input,
                          **kwargs)
            if lid == 0:
                pre_boxes = (pre_head(query) + inverse_sigmoid(ref, eps=1e-3)).sigmoid()
                anchors = pre_boxes.detach()
            branch_in = query if h_prev is None else query + h_prev.detach()
            delta = reg_branches[lid](branch_in)
            acc = delta if acc is None else delta + acc
            with torch.autocast(device_type=acc.device.type, enabled=False):
                dist = distribution_integral(acc.float(), self.project)
                box = decode_corners(anchors.float(), dist, c)
            hidden.append(self.norm(query))
            corners.append(acc)
            boxes.append(box)
            ref = box.detach()
            refs.append(ref)
            h_prev = query
        return dict(hidden_states=torch.stack(hidden), references=refs,
                    all_layers_corners=torch.stack(corners),
                    all_layers_boxes=torch.stack(boxes), anchors=anchors,
                    pre_boxes=pre_boxes)
