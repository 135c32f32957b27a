"""mmengine adapter of MACIL-SD: dataset, two-optimizer model, λ and EMA hooks, metric."""
# the networks and losses, buildable by type from any mmengine config
from mmengine.registry import MODELS as _MODELS  # noqa: E402

from ..losses import SemiBagContrastiveLoss, TopKMILLoss  # noqa: E402
from ..modules import MACILAudioVisual, MACILVisualTeacher  # noqa: E402
from .dataset import XDViolenceDataset, xdv_test_collate
from .hooks import MACILLambdaHook, SelfDistillEMAHook
from .metric import FrameAPMetric
from .model import MACILSD

for _cls in (MACILAudioVisual, MACILVisualTeacher, TopKMILLoss, SemiBagContrastiveLoss):
    _MODELS.register_module(module=_cls)

__all__ = ['XDViolenceDataset', 'xdv_test_collate', 'MACILLambdaHook', 'SelfDistillEMAHook',
           'FrameAPMetric', 'MACILSD']
