"""DSD: dual self-distillation for U-shaped segmentation networks.

``plugins.dsd.functional`` holds the loss on plain tensors and
``plugins.dsd.heads`` the projection heads; host adapters (MONAI, mmseg)
build on them.
"""
