"""DSD: dual self-distillation for U-shaped segmentation networks.

``plugins.dsd.functional`` holds the loss on plain tensors, ``heads`` the
projection heads, ``presets`` where the taps sit in each network and
``attach`` the hook-based wrapper (:class:`DSDTaps`, :class:`DSDLoss`) that
works on stock networks without importing any host library.
"""
from .attach import DSDLoss, DSDTaps
from .functional import dsd_loss
from .heads import DSDHead

__all__ = ['DSDTaps', 'DSDLoss', 'DSDHead', 'dsd_loss']
