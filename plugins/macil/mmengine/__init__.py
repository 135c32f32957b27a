"""mmengine adapter of MACIL-SD: dataset, two-optimizer model, λ and EMA hooks, metric."""
from mmengine.registry import MODELS as _MODELS

from ..losses import SemiBagContrastiveLoss, TopKMILLoss
from ..models.networks import MACILAudioVisual, MACILVisualTeacher
from .dataset import XDViolenceDataset, xdv_test_collate
from .hooks import MACILLambdaHook, SelfDistillEMAHook
from .metric import FrameAPMetric
from .model import MACILSD

# the networks and losses, buildable by type from any mmengine config
for _cls in (MACILAudioVisual, MACILVisualTeacher, TopKMILLoss, SemiBagContrastiveLoss):
    _MODELS.register_module(module=_cls)

__all__ = [
    'XDViolenceDataset', 'xdv_test_collate', 'MACILLambdaHook', 'SelfDistillEMAHook',
    'FrameAPMetric', 'MACILSD'
]
