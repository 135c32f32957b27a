"""The import rules of the package, read from the source (no import needed).

* ``plugins.core`` imports no method package;
* a method package imports no other method package;
* every ``functional.py`` imports no host library (mmdet, mmseg, mmengine,
  mmcv, MONAI, Open3D): the maths runs on plain tensors;
* no library module imports ``plugins.testing`` (the synthetic dataset
  makers): real readers and models never depend on test data.
"""
import ast
import os
import os.path as osp
import sys
from typing import Dict, List, Set, Tuple

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
METHODS = ('golsd', 'dsd', 'slidr', 'macil')
HOSTS = ('mmdet', 'mmseg', 'mmengine', 'mmcv', 'monai', 'open3d')


def _module_name(path: str) -> str:
    rel = osp.relpath(path, ROOT)[:-3].replace(os.sep, '.')
    return rel[:-len('.__init__')] if rel.endswith('.__init__') else rel


def imports_of(source: str, module: str, is_package: bool = False) -> List[Tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``source``."""
    package = module if is_package else module.rpartition('.')[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split('.')
                base = '.'.join(parts[:len(parts) - node.level + 1])
                name = f'{base}.{node.module}' if node.module else base
            else:
                name = node.module
            out.append((node.lineno, name))
            # ``from . import x`` / ``from .. import golsd`` name modules too
            out += [(node.lineno, f'{name}.{alias.name}') for alias in node.names
                    if not node.module]
    return out


def _all_imports() -> Dict[str, List[Tuple[int, str]]]:
    found = {}
    for folder, _, files in os.walk(osp.join(ROOT, 'plugins')):
        for name in files:
            if name.endswith('.py'):
                path = osp.join(folder, name)
                with open(path, encoding='utf-8') as f:
                    found[osp.relpath(path, ROOT)] = imports_of(f.read(), _module_name(path),
                                                                name == '__init__.py')
    return found


def _method(module: str) -> str:
    parts = module.split('.')
    return parts[1] if len(parts) > 1 and parts[0] == 'plugins' and parts[1] in METHODS else ''


def violations() -> Set[str]:
    bad = set()
    for path, imports in _all_imports().items():
        here = _module_name(osp.join(ROOT, path))
        mine = _method(here)
        for line, name in imports:
            other = _method(name)
            if here.startswith('plugins.core') and other:
                bad.add(f'{path}:{line}: core imports the method package {name}')
            if mine and other and other != mine:
                bad.add(f'{path}:{line}: {mine} imports another method, {name}')
            if path.endswith('functional.py') and name.split('.')[0] in HOSTS:
                bad.add(f'{path}:{line}: a functional layer imports the host library {name}')
            if (name == 'plugins.testing' or name.startswith('plugins.testing.')) and \
                    not here.startswith('plugins.testing'):
                bad.add(f'{path}:{line}: library code imports the synthetic maker {name}')
    return bad


def test_the_package_keeps_its_layers():
    assert not violations(), '\n'.join(sorted(violations()))


@pytest.mark.parametrize('source,module,package,expected', [
    ('from ..golsd import functional', 'plugins.core.x', False, 'plugins.golsd'),
    ('from .. import golsd', 'plugins.core.x', False, 'plugins.golsd'),
    ('from ...slidr.functional import a', 'plugins.dsd.monai.y', False, 'plugins.slidr.functional'),
    ('import mmdet.models', 'plugins.golsd.functional', False, 'mmdet.models'),
    ('from .functional import f', 'plugins.macil', True, 'plugins.macil.functional'),
])
def test_imports_are_resolved_the_way_python_does(source, module, package, expected):
    assert expected in [name for _, name in imports_of(source, module, package)]


def test_each_rule_catches_a_break(tmp_path, monkeypatch):
    """Write one offending file per rule into a copy of the tree's layout."""
    cases = {
        'plugins/core/bad.py': 'from ..golsd import functional\n',
        'plugins/dsd/bad.py': 'from plugins.slidr.functional import x\n',
        'plugins/macil/functional.py': 'from mmengine.registry import MODELS\n',
        'plugins/slidr/reader.py': 'from ..testing.nuscenes import make_nuscenes_synthetic\n',
        'plugins/testing/maker.py': 'from ..slidr.datasets.lidarseg import CAMERAS\n',  # allowed
    }
    for rel, text in cases.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.setattr(sys.modules[__name__], 'ROOT', str(tmp_path))
    found = violations()
    assert any('core imports the method package plugins.golsd' in v for v in found)
    assert any('dsd imports another method, plugins.slidr.functional' in v for v in found)
    assert any('functional layer imports the host library mmengine.registry' in v for v in found)
    assert any('imports the synthetic maker plugins.testing.nuscenes' in v for v in found)
    assert len(found) == 4
