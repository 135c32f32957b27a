"""mmengine adapter of SLidR: nuScenes pre-training dataset, collate and model."""
from .dataset import NuScenesSLidRDataset, slidr_collate
from .model import SLidRPretrainer

__all__ = ['NuScenesSLidRDataset', 'slidr_collate', 'SLidRPretrainer']
