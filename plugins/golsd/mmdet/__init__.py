"""mmdet adapter of GO-LSD: FDR decoders, heads, detectors (DINO, Deformable-DETR)
and the two losses, registered in mmdet's ``MODELS``."""
from mmdet.registry import MODELS

from ..losses import DDFLoss, FGLLoss
from .decoder import GOLSDDeformableDetrTransformerDecoder, GOLSDDinoTransformerDecoder
from .deformable_head import GOLSDDeformableDETRHead
from .detector import GOLSDDINO, GOLSDDeformableDETR
from .dino_head import GOLSDDINOHead

for _loss in (FGLLoss, DDFLoss):
    MODELS.register_module(module=_loss, force=True)

__all__ = [
    'GOLSDDinoTransformerDecoder', 'GOLSDDeformableDetrTransformerDecoder', 'GOLSDDINOHead',
    'GOLSDDeformableDETRHead', 'GOLSDDINO', 'GOLSDDeformableDETR', 'FGLLoss', 'DDFLoss'
]
