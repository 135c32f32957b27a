"""DSD: dual self-distillation for U-shaped segmentation networks.

``functional`` holds the loss on plain tensors; ``losses`` the one public loss
(:class:`DSDLoss`, its memory-lean strategy in ``lean`` and ``grads``);
``models`` the projection heads (``heads``), where the taps sit in each network
(``presets``) and the hooks (``attach``: :class:`DSDTaps`); ``datasets`` the
MSD reader. None imports a host library.

Papers: Banerjee, Dong, Glide-Hurst, "Dual self-distillation of U-shaped
networks for 3D medical image segmentation", IEEE ISBI 2024; Banerjee,
Summerfield, Dong, Glide-Hurst, "Volumetric medical image segmentation through
dual self-distillation in U-shaped networks", IEEE TBME 2025; both are
arXiv:2306.03271 (v1 and v3). "The reference" means the authors'
implementation, github.com/soumbane/DualSelfDistillation.
"""
from .functional import dsd_loss
from .losses import DSDLoss
from .models.attach import DSDTaps
from .models.heads import DSDHead

#: host module -> this package's adapter modules, imported once the host is imported
HOST_ADAPTERS = {'mmengine': ['plugins.dsd.mmengine'], 'mmseg.models': ['plugins.dsd.mmseg']}

__all__ = ['HOST_ADAPTERS', 'DSDTaps', 'DSDLoss', 'DSDHead', 'dsd_loss']
