"""Self-distillation plugins for OpenMMLab and MONAI.

``import plugins`` (or ``custom_imports=dict(imports=['plugins'])`` in a
config) registers every plugin module with the host libraries that are
imported, now or later, and nothing else: a host that is never imported is
never paid for.
"""
import importlib
import warnings

from .core.checkpoint import register_numpy_types
from .core.lazy import when_imported

__version__ = '0.1.0'

# host module -> adapter modules that register into it
HOST_ADAPTERS = {
    'mmengine': ['plugins.core.mmengine_adapter', 'plugins.dsd.mmengine',
                 'plugins.macil.mmengine', 'plugins.slidr.mmengine'],
    'mmdet.datasets': ['plugins.core.mmdet_adapter'],
    'mmdet.models': ['plugins.golsd.mmdet'],
    'mmseg.models': ['plugins.dsd.mmseg'],
}


def _adapter_loader(adapters):
    def load(_module):
        for name in adapters:
            importlib.import_module(name)
    return load


# mmengine 0.10.7 imports pkg_resources on every config load; the pinned
# setuptools still ships it but warns each time.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated',
                        category=UserWarning)
register_numpy_types()
for _host, _adapters in HOST_ADAPTERS.items():
    when_imported(_host, _adapter_loader(_adapters))

__all__ = ['__version__', 'HOST_ADAPTERS']
