"""mmengine adapter of SLidR: pre-training (dataset, collate, model) and lidar
segmentation for its evaluation (dataset, collate, segmentor, point mIoU); the
loss in ``MODELS`` and the augmentations in ``TRANSFORMS``."""
from mmengine.registry import MODELS as _MODELS, TRANSFORMS as _TRANSFORMS

from ..datasets.transforms import (DropCuboids, RandomCameraOrder, RandomResizedCropFlipImages,
                                   RandomRotateFlipCloud, ResizeImages)
from ..losses import SuperpixelNCELoss
from .dataset import NuScenesSLidRDataset, default_pretraining_pipeline, slidr_collate
from .model import SLidRPretrainer
from .segmentation import (NuScenesLidarSegDataset, PointMIoUMetric, SemanticKITTIDataset,
                           SLidRSegmentor, lidarseg_collate)

_MODELS.register_module(module=SuperpixelNCELoss)
for _cls in (RandomRotateFlipCloud, RandomCameraOrder, DropCuboids, RandomResizedCropFlipImages,
             ResizeImages):
    _TRANSFORMS.register_module(module=_cls)

__all__ = [
    'SuperpixelNCELoss', 'NuScenesSLidRDataset', 'slidr_collate', 'default_pretraining_pipeline',
    'SLidRPretrainer', 'NuScenesLidarSegDataset', 'SemanticKITTIDataset', 'lidarseg_collate',
    'SLidRSegmentor', 'PointMIoUMetric'
]
