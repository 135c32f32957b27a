"""The demo's stages, one module each.

A stage module defines ``ORDER`` (its place in a full demo) and ``run(ctx) ->
str`` (train, evaluate, return the report section); :func:`stages` finds
every module here, so adding a stage is adding a module.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Dict

__all__ = ['stages']


def stages() -> Dict[str, Callable]:
    """Stage name (the module name) -> its ``run``, in ``ORDER``."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name == 'common':
            continue
        module = importlib.import_module(f'{__name__}.{info.name}')
        found.append((module.ORDER, info.name, module.run))
    return {name: run for _, name, run in sorted(found)}
