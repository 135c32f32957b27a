"""mmengine adapter of DSD: 3D MONAI networks trained by the mmengine Runner.

Registers :class:`MonaiSegmentor` (model), :class:`MSDDataset` (dataset),
``msd_collate`` (collate function) and :class:`DiceHD95Metric` (metric) in
mmengine's root registries, so ``tools/train.py`` / ``tools/test.py`` run
MSD-format data with or without DSD, and :class:`~plugins.dsd.DSDLoss` in
``MODELS`` (mmseg's registry finds it there too). MONAI is imported when they
are built.
"""
from mmengine.registry import MODELS as _MODELS

from ..losses import DSDLoss
from .dataset import MSDDataset, msd_collate
from .metric import DiceHD95Metric
from .model import MonaiSegmentor, build_monai_network

_MODELS.register_module(module=DSDLoss)

__all__ = [
    'DSDLoss', 'MonaiSegmentor', 'build_monai_network', 'MSDDataset', 'msd_collate',
    'DiceHD95Metric'
]
