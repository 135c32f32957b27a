"""The lint run (flake8, isort, yapf and codespell, configured in setup.cfg; the same hooks as
.pre-commit-config.yaml) passes on the repository."""
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.mark.parametrize('tool,args', [
    ('flake8', ['-m', 'flake8', '.']),
    ('isort', ['-m', 'isort', '--check-only', '--diff', 'plugins', 'tools', 'tests', 'configs']),
    ('yapf', ['-m', 'yapf', '--diff', '--recursive', 'plugins', 'tools', 'tests', 'configs']),
    ('codespell',
     ['-m', 'codespell_lib', 'plugins', 'tools', 'tests', 'docs', 'configs', 'README.md']),
])
def test_lint(tool, args):
    pytest.importorskip(args[1])
    proc = subprocess.run([sys.executable, *args],
                          cwd=ROOT,
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert proc.returncode == 0, f'{tool} found problems:\n{proc.stdout[-5000:]}{proc.stderr[-2000:]}'
