"""mmseg adapter of DSD: a segmentor that distils mmseg's 2D ``UNet``."""
from .segmentor import DSDEncoderDecoder

__all__ = ['DSDEncoderDecoder']
