"""mmdet adapter of GO-LSD: FDR decoders, heads and detectors (DINO, Deformable-DETR)."""
from .decoder import GOLSDDeformableDetrTransformerDecoder, GOLSDDinoTransformerDecoder
from .detector import GOLSDDINO, GOLSDDeformableDETR
from .head import GOLSDDeformableDETRHead, GOLSDDINOHead

__all__ = ['GOLSDDinoTransformerDecoder', 'GOLSDDeformableDetrTransformerDecoder',
           'GOLSDDINOHead', 'GOLSDDeformableDETRHead', 'GOLSDDINO', 'GOLSDDeformableDETR']
