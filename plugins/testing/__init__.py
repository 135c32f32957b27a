"""Synthetic datasets in the real on-disk formats, for tests, the demo and
``tools/data/make_demo_data.py``.

Each maker writes what the matching reader expects of a downloaded dataset
(COCO json, mmseg folders, an MSD task, a nuScenes tree the official devkit
loads, SemanticKITTI sequences, XD-Violence features), deterministically from
a seed. Library code never imports this package; ``import plugins`` does not
load it.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Dict

__all__ = ['demo_makers']


def demo_makers() -> Dict[str, Callable[..., str]]:
    """Format name -> ``make_demo(out, seed=0, small=False)`` of every maker
    module here: adding a format is adding a module with ``FORMAT`` and
    ``make_demo``."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f'{__name__}.{info.name}')
        if hasattr(module, 'make_demo'):
            found[module.FORMAT] = module.make_demo
    return dict(sorted(found.items()))
