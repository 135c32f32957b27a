"""mmengine adapter of SLidR: pre-training (dataset, collate, model) and lidar
segmentation for its evaluation (dataset, collate, segmentor, point mIoU)."""
from .dataset import NuScenesSLidRDataset, slidr_collate
from .model import SLidRPretrainer
from .segmentation import (NuScenesLidarSegDataset, PointMIoUMetric, SemanticKITTIDataset,
                           SLidRSegmentor, lidarseg_collate)

__all__ = ['NuScenesSLidRDataset', 'slidr_collate', 'SLidRPretrainer', 'NuScenesLidarSegDataset',
           'SemanticKITTIDataset', 'lidarseg_collate', 'SLidRSegmentor', 'PointMIoUMetric']
