"""Self-distillation plugins for OpenMMLab and MONAI.

``import plugins`` (or ``custom_imports=dict(imports=['plugins'])`` in a
config) registers every plugin module with the host libraries that are
imported, now or later, and nothing else: a host that is never imported is
never paid for.
"""
import importlib
import pkgutil
import warnings

from .core.checkpoint import register_numpy_types
from .core.lazy import when_imported

__version__ = '0.1.0'


def _packages():
    """``core``, then every method package (a folder here), alphabetically.

    ``testing`` holds the synthetic data makers and is not a plugin.
    """
    names = sorted(
        info.name for info in pkgutil.iter_modules(__path__)
        if info.ispkg and info.name not in ('core', 'testing'))
    return ['core'] + names


def _host_adapters():
    """Host module -> adapter modules, merged from each package's ``HOST_ADAPTERS``."""
    merged = {}
    for name in _packages():
        package = importlib.import_module(f'{__name__}.{name}')
        for host, adapters in getattr(package, 'HOST_ADAPTERS', {}).items():
            merged.setdefault(host, []).extend(adapters)
    return merged


def _adapter_loader(adapters):

    def load(_module):
        for name in adapters:
            importlib.import_module(name)

    return load


# mmengine 0.10.7 imports pkg_resources on every config load; the pinned
# setuptools still ships it but warns each time.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)
register_numpy_types()
#: host module -> adapter modules that register into it (each package declares its own)
HOST_ADAPTERS = _host_adapters()
for _host, _adapters in HOST_ADAPTERS.items():
    when_imported(_host, _adapter_loader(_adapters))

__all__ = ['__version__', 'HOST_ADAPTERS']
