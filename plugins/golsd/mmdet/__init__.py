"""mmdet adapter of GO-LSD: registers the FDR decoder, the head and the detector."""
from .decoder import GOLSDDinoTransformerDecoder
from .detector import GOLSDDINO
from .head import GOLSDDINOHead

__all__ = ['GOLSDDinoTransformerDecoder', 'GOLSDDINOHead', 'GOLSDDINO']
