"""Pieces shared by every plugin; no host library is imported here."""
from .checkpoint import UnsafeCheckpointError, export_state_dict, load_checkpoint, save_checkpoint
from .functional import info_nce, temperature_kl
from .lazy import when_imported
from .losses import InfoNCELoss, TemperatureKLLoss
from .reduction import weight_reduce
from .taps import MissingModuleError, Taps, TapSpec, resolve_module

#: host module -> this package's adapter modules, imported once the host is imported
HOST_ADAPTERS = {'mmengine': ['plugins.core.mmengine'], 'mmdet.datasets': ['plugins.core.mmdet']}

__all__ = [
    'HOST_ADAPTERS', 'Taps', 'TapSpec', 'resolve_module', 'MissingModuleError', 'temperature_kl',
    'info_nce', 'weight_reduce', 'TemperatureKLLoss', 'InfoNCELoss', 'load_checkpoint',
    'save_checkpoint', 'export_state_dict', 'UnsafeCheckpointError', 'when_imported'
]
