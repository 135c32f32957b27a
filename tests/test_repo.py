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
    extracted = subprocess.run(['bash', '-c', "awk '/^```/{n++; next} n==1' README.md | sed -n 2p"],
                               cwd=ROOT,
                               capture_output=True,
                               text=True).stdout.strip()
    assert extracted == _first_code_block()[1]
    assert 'eval "$cmd"' in ci


def test_top_level_layout():
    for name in ('plugins', 'configs', 'tools', 'tests', 'docs', 'pyproject.toml', 'README.md',
                 '.ci'):
        assert os.path.exists(os.path.join(ROOT, name)), name
    assert os.path.isdir(os.path.join(ROOT, 'plugins', 'core'))


def test_every_tool_and_config_named_in_the_docs_is_tracked():
    """A path the README or docs tell users to run must be in the repository
    (not just on this disk: an ignore rule once hid tools/data/)."""
    tracked = set(
        subprocess.run(['git', 'ls-files'], cwd=ROOT, capture_output=True,
                       text=True).stdout.split())
    if not tracked:  # not a git checkout (e.g. an sdist): nothing to compare
        return
    texts = [open(os.path.join(ROOT, 'README.md')).read()]
    docs = os.path.join(ROOT, 'docs')
    texts += [
        open(os.path.join(docs, n)).read() for n in sorted(os.listdir(docs)) if n.endswith('.md')
    ]
    named = set()
    for text in texts:
        named |= set(re.findall(r'\b((?:tools|configs)/[\w./-]+\.py)\b', text))
    missing = sorted(p for p in named if p not in tracked)
    assert not missing, f'named in the docs but not tracked: {missing}'


#: ``{model}[_{part}...]_{gpus}xb{batch}-{schedule}_{dataset}.py``, OpenMMLab's order
CONFIG_NAME = re.compile(r'^[a-z0-9-]+(?:_[a-z0-9-]+)*_(?P<nxb>\d+xb\d+)-(?P<sched>\d+(?:e|it|k))'
                         r'_(?P<data>[a-z0-9-]+)\.py$')
DATASETS = ('coco', 'msd', 'shapes2d', 'drive', 'xdviolence', 'nuscenes', 'semantickitti')


def _config_text_with_local_bases(rel: str) -> str:
    """A config's text and its relative ``_base_`` files' (``mmdet::`` ones skipped)."""
    path = os.path.normpath(os.path.join(ROOT, 'configs', rel))
    text = open(path).read()
    for base in re.findall(r"_base_ = '(\.{1,2}/[^']+)'", text):
        text += _config_text_with_local_bases(
            os.path.relpath(
                os.path.join(os.path.dirname(path), base), os.path.join(ROOT, 'configs')))
    return text


def test_config_names_follow_one_pattern():
    """Demo-data configs end in ``demo-<dataset>``; dataset names are spelled one way."""
    bad = []
    for folder in sorted(os.listdir(os.path.join(ROOT, 'configs'))):
        if folder.startswith('_'):
            continue
        for name in sorted(os.listdir(os.path.join(ROOT, 'configs', folder))):
            m = CONFIG_NAME.match(name)
            data = m.group('data') if m else ''
            dataset = data[len('demo-'):] if data.startswith('demo-') else data
            demo = "'data/demo/" in _config_text_with_local_bases(os.path.join(folder, name))
            if not m or dataset.split('-')[0] not in DATASETS or demo != data.startswith('demo-'):
                bad.append(f'{folder}/{name}')
    assert not bad, f'config names outside the pattern: {bad}'
    assert not CONFIG_NAME.match('dynunet_1xb1-16e_msd-demo.py').group('data').startswith('demo-')


def test_demo_data_maker_writes_every_format(tmp_path):
    import sys

    from plugins.testing import demo_makers
    assert set(demo_makers()) == {'coco', 'msd', 'shapes2d', 'xdv', 'nuscenes', 'semantickitti'}
    for fmt in demo_makers():
        out = tmp_path / fmt
        proc = subprocess.run(
            [sys.executable, 'tools/data/make_demo_data.py', fmt, '--out',
             str(out), '--small'],
            cwd=ROOT,
            capture_output=True,
            text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert any(out.rglob('*')), fmt
