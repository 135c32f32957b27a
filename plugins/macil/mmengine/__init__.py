"""mmengine adapter of MACIL-SD: dataset, two-optimizer model, λ and EMA hooks, metric."""
from .dataset import XDViolenceDataset, xdv_test_collate
from .hooks import MACILLambdaHook, SelfDistillEMAHook
from .metric import FrameAPMetric
from .model import MACILSD

__all__ = ['XDViolenceDataset', 'xdv_test_collate', 'MACILLambdaHook', 'SelfDistillEMAHook',
           'FrameAPMetric', 'MACILSD']
