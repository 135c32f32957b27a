"""mmengine adapter of DSD: 3D MONAI networks trained by the mmengine Runner.

Registers :class:`MonaiSegmentor` (model), :class:`MSDDataset` (dataset),
``msd_collate`` (collate function) and :class:`DiceHD95Metric` (metric) in
mmengine's root registries, so ``tools/train.py`` / ``tools/test.py`` run
MSD-format data with or without DSD. MONAI is imported when they are built.
"""
from .dataset import MSDDataset, msd_collate
from .metric import DiceHD95Metric
from .model import MonaiSegmentor, build_monai_network

__all__ = ['MonaiSegmentor', 'build_monai_network', 'MSDDataset', 'msd_collate',
           'DiceHD95Metric']
