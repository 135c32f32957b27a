"""GO-LSD DINO detector (spec golsd.md §8)."""
from __future__ import annotations

from typing import Dict, Optional

from mmdet.models.detectors import DINO
from mmdet.registry import MODELS
from torch import Tensor

from .decoder import GOLSDDinoTransformerDecoder, fdr_config

__all__ = ['GOLSDDINO']


@MODELS.register_module()
class GOLSDDINO(DINO):
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

    def __init__(self, *args, golsd: Optional[Dict] = None, **kwargs) -> None:
        self.golsd = fdr_config(golsd)
        head = kwargs.get('bbox_head')
        if head is not None:
            head['golsd'] = dict(self.golsd)
        super().__init__(*args, **kwargs)

    def _init_layers(self) -> None:
        decoder_cfg = dict(self.decoder)
        super()._init_layers()
        self.decoder = GOLSDDinoTransformerDecoder(**decoder_cfg, golsd=self.golsd)

    def forward_decoder(self, query: Tensor, memory: Tensor, memory_mask: Tensor,
                        reference_points: Tensor, spatial_shapes: Tensor,
                        level_start_index: Tensor, valid_ratios: Tensor,
                        dn_mask: Optional[Tensor] = None, **kwargs) -> Dict:
        """Decoder pass returning FDR corners, boxes, anchors and pre boxes."""
        out = self.decoder(
            query=query, value=memory, key_padding_mask=memory_mask,
            self_attn_mask=dn_mask, reference_points=reference_points,
            spatial_shapes=spatial_shapes, level_start_index=level_start_index,
            valid_ratios=valid_ratios, reg_branches=self.bbox_head.reg_branches,
            pre_head=self.bbox_head.pre_head, **kwargs)
        if query.shape[1] == self.num_queries:
            # No denoising queries (no GT on this rank): keep the label
            # embedding in the graph so DDP finds a gradient for it. (The host
            # tests len(query), the batch size, which misses this case.)
            zero = self.dn_query_generator.label_embedding.weight[0, 0] * 0.0
            out['hidden_states'] = out['hidden_states'] + zero
        return out
