"""GO-LSD detectors: DINO and Deformable-DETR with box refinement (D-FINE, arXiv:2410.13842)."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from mmdet.models.detectors import DINO, DeformableDETR
from mmdet.registry import MODELS
from torch import Tensor

from .decoder import GOLSDDeformableDetrTransformerDecoder, GOLSDDinoTransformerDecoder
from .fdr import fdr_config
from .inputs import check_ground_truth

__all__ = ['GOLSDDINO', 'GOLSDDeformableDETR']


def _pass_settings(golsd: Optional[Dict], kwargs: dict, detector: str, head_type: str) -> Dict:
    """Check the head type and hand the settings to it.

    Raises:
        ValueError: If the head is not the GO-LSD head of this detector.
    """
    cfg = fdr_config(golsd)
    head = kwargs.get('bbox_head')
    if head is not None:
        got = head.get('type')
        if got not in (head_type,
                       None) and not (isinstance(got, type) and got.__name__ == head_type):
            raise ValueError(f"{detector} needs bbox_head type '{head_type}', got {got!r}: "
                             f"set model.bbox_head.type='{head_type}' (the GO-LSD detector "
                             f"and head go together)")
        head['golsd'] = dict(cfg)
    return cfg


class _CheckedLoss:
    """Checks the ground truth once per batch before the host's loss."""

    def loss(self, batch_inputs: Tensor, batch_data_samples):
        check_ground_truth(batch_data_samples, self.bbox_head.num_classes)
        return super().loss(batch_inputs, batch_data_samples)


@MODELS.register_module()
class GOLSDDINO(_CheckedLoss, DINO):
    """DINO with FDR boxes and GO-LSD self-distillation.

    Args:
        golsd (dict): ``reg_max``, ``reg_scale``, ``up``, ``T``; passed on to
            the decoder and the head.
        *args, **kwargs: As :class:`mmdet.models.DINO`.

    Example (config)::

        _base_ = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'
        custom_imports = dict(imports=['plugins'], allow_failed_imports=False)
        model = dict(type='GOLSDDINO', bbox_head=dict(type='GOLSDDINOHead'))
    """

    # denoising queries exist only in training (``tools/export.py`` drops them)
    training_only_modules = ('dn_query_generator', )

    def __init__(self, *args, golsd: Optional[Dict] = None, **kwargs) -> None:
        self.golsd = _pass_settings(golsd, kwargs, 'GOLSDDINO', 'GOLSDDINOHead')
        super().__init__(*args, **kwargs)

    def _init_layers(self) -> None:
        decoder_cfg = dict(self.decoder)
        super()._init_layers()
        self.decoder = GOLSDDinoTransformerDecoder(**decoder_cfg, golsd=self.golsd)

    def forward_decoder(self,
                        query: Tensor,
                        memory: Tensor,
                        memory_mask: Tensor,
                        reference_points: Tensor,
                        spatial_shapes: Tensor,
                        level_start_index: Tensor,
                        valid_ratios: Tensor,
                        dn_mask: Optional[Tensor] = None,
                        **kwargs) -> Dict:
        """Decoder pass returning FDR corners, boxes, anchors and pre boxes."""
        out = self.decoder(
            query=query,
            value=memory,
            key_padding_mask=memory_mask,
            self_attn_mask=dn_mask,
            reference_points=reference_points,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios,
            reg_branches=self.bbox_head.reg_branches,
            pre_head=self.bbox_head.pre_head,
            **kwargs)
        if query.shape[1] == self.num_queries:
            # No denoising queries (no GT on this rank): keep the label
            # embedding in the graph so DDP finds a gradient for it. (The host
            # tests len(query), the batch size, which misses this case.)
            zero = self.dn_query_generator.label_embedding.weight[0, 0] * 0.0
            out['hidden_states'] = out['hidden_states'] + zero
        return out


@MODELS.register_module()
class GOLSDDeformableDETR(_CheckedLoss, DeformableDETR):
    """Deformable-DETR with box refinement, FDR boxes and GO-LSD.

    ``with_box_refine=True`` is required; ``as_two_stage=True`` is
    recommended (4-D references, and the encoder proposals join the GO vote).

    Args:
        golsd (dict): ``reg_max``, ``reg_scale``, ``up``, ``T``.
        *args, **kwargs: As :class:`mmdet.models.DeformableDETR`.

    Raises:
        ValueError: Without ``with_box_refine=True``.
    """

    def __init__(self, *args, golsd: Optional[Dict] = None, **kwargs) -> None:
        if not kwargs.get('with_box_refine', False):
            raise ValueError('GOLSDDeformableDETR needs with_box_refine=True: FDR '
                             'refines boxes layer by layer with one branch per layer')
        self.golsd = _pass_settings(golsd, kwargs, 'GOLSDDeformableDETR', 'GOLSDDeformableDETRHead')
        super().__init__(*args, **kwargs)

    def _init_layers(self) -> None:
        decoder_cfg = dict(self.decoder)
        super()._init_layers()
        self.decoder = GOLSDDeformableDetrTransformerDecoder(**decoder_cfg, golsd=self.golsd)

    def pre_decoder(self, memory: Tensor, memory_mask: Tensor,
                    spatial_shapes: Tensor) -> Tuple[Dict, Dict]:
        """The host's, plus the top-k proposals in decoder-query order."""
        decoder_inputs, head_inputs = super().pre_decoder(memory, memory_mask, spatial_shapes)
        if self.as_two_stage and self.training:
            cls = head_inputs['enc_outputs_class']
            # the same selection as the host (class 0 score), hence the same order
            idx = torch.topk(cls[..., 0], self.num_queries, dim=1)[1]
            head_inputs['enc_topk_class'] = torch.gather(
                cls, 1,
                idx.unsqueeze(-1).expand(-1, -1, cls.shape[-1]))
            head_inputs['enc_topk_coord'] = torch.gather(head_inputs['enc_outputs_coord'], 1,
                                                         idx.unsqueeze(-1).expand(-1, -1, 4))
        return decoder_inputs, head_inputs

    def forward_decoder(self, query: Tensor, query_pos: Tensor, memory: Tensor, memory_mask: Tensor,
                        reference_points: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                        valid_ratios: Tensor) -> Dict:
        """Decoder pass returning FDR corners, boxes, anchors and pre boxes."""
        return self.decoder(
            query=query,
            value=memory,
            query_pos=query_pos,
            key_padding_mask=memory_mask,
            reference_points=reference_points,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios,
            reg_branches=self.bbox_head.reg_branches,
            pre_head=self.bbox_head.pre_head)
