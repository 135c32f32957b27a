"""Run a callback once a module has been imported, without importing it.

``import plugins`` must stay light: a MONAI user must not pay for mmdet, yet an
mmdet user who imports ``plugins`` *before* mmdet must still get the mmdet
adapters registered. :func:`when_imported` covers both orders: the callback
runs at once when the module is already in :data:`sys.modules`, otherwise right
after the module's own code has finished executing.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from types import ModuleType
from typing import Callable, Dict, List

__all__ = ['when_imported', 'watched_roots']

_Callback = Callable[[ModuleType], None]
_pending: Dict[str, List[_Callback]] = {}
_lock = threading.RLock()


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Meta-path finder that wraps the loader of watched modules."""

    def __init__(self) -> None:
        self._busy: set = set()

    def find_spec(self, fullname, path, target=None):  # noqa: D401
        if fullname not in _pending or fullname in self._busy:
            return None
        self._busy.add(fullname)
        try:
            # Ask the rest of the import system; we are skipped through _busy.
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is None:
                for finder in sys.meta_path:
                    if finder is self or not hasattr(finder, 'find_spec'):
                        continue
                    spec = finder.find_spec(fullname, path, target)
                    if spec is not None:
                        break
        finally:
            self._busy.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, 'exec_module'):
            return spec
        spec.loader = _CallbackLoader(spec.loader, fullname)
        return spec


class _CallbackLoader(importlib.abc.Loader):
    """Delegating loader that fires the callbacks after ``exec_module``."""

    def __init__(self, loader: importlib.abc.Loader, fullname: str) -> None:
        self._loader = loader
        self._fullname = fullname

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # Keep the real loader visible to tools that inspect it.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        _fire(self._fullname, module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


_finder = _PostImportFinder()


def _fire(name: str, module: ModuleType) -> None:
    with _lock:
        callbacks = _pending.pop(name, [])
    for callback in callbacks:
        callback(module)


def when_imported(name: str, callback: _Callback) -> None:
    """Call ``callback(module)`` once the module ``name`` is imported.

    Args:
        name (str): Absolute module name, e.g. ``'mmdet'`` or
            ``'mmengine.registry'``.
        callback (Callable[[ModuleType], None]): Called exactly once with the
            imported module: immediately if ``name`` is already imported,
            otherwise just after its code has run.

    Raises:
        ValueError: If ``name`` is empty or relative.
    """
    if not name or name.startswith('.'):
        raise ValueError(f'when_imported needs an absolute module name, '
                         f'got {name!r}')
    module = sys.modules.get(name)
    if module is not None:
        callback(module)
        return
    with _lock:
        _pending.setdefault(name, []).append(callback)
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)


def watched_roots() -> set:
    """Top-level packages with a :func:`when_imported` callback still waiting
    (the hosts whose adapters have not run yet)."""
    with _lock:
        return {name.split('.')[0] for name in _pending}
