"""The README's commands and the repository layout the issues promise."""
import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _first_code_block():
    text = open(os.path.join(ROOT, 'README.md')).read()
    block = re.search(r'```[a-z]*\n(.*?)```', text, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_readme_first_block_is_demo_then_tests():
    lines = _first_code_block()
    assert len(lines) == 2, lines
    assert lines[0].endswith('tools/demo.py') and 'pytest tests' in lines[1]
    assert all(line.startswith('bash tools/env.sh ') for line in lines)


def test_ci_runs_exactly_the_readme_test_command():
    ci = open(os.path.join(ROOT, '.ci', 'run')).read()
    extracted = subprocess.run(
        ['bash', '-c', "awk '/^```/{n++; next} n==1' README.md | sed -n 2p"],
        cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert extracted == _first_code_block()[1]
    assert 'eval "$cmd"' in ci


def test_top_level_layout():
    for name in ('plugins', 'configs', 'tools', 'tests', 'docs', 'pyproject.toml',
                 'README.md', '.ci'):
        assert os.path.exists(os.path.join(ROOT, name)), name
    assert os.path.isdir(os.path.join(ROOT, 'plugins', 'core'))
