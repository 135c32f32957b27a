"""tools/train.py trains, saves, resumes, and a killed run resumes bit-identically."""
import os
import signal
import subprocess
import time

import pytest
import torch

from plugins.core.checkpoint import load_checkpoint

from .conftest import DET_CONFIG, ROOT, det_options, python, run, scalar_rows

pytestmark = pytest.mark.slow
EPOCHS = 3


@pytest.fixture(scope='module')
def uninterrupted(coco_root, tmp_path_factory):
    work = str(tmp_path_factory.mktemp('uninterrupted'))
    run([
        python(), 'tools/train.py', DET_CONFIG, '--work-dir', work, '--cfg-options',
        *det_options(coco_root, EPOCHS)
    ])
    return work


def _weights(path):
    return load_checkpoint(path)['state_dict']


def test_train_saves_checkpoints_logs_and_evaluates(uninterrupted):
    for e in range(1, EPOCHS + 1):
        assert os.path.isfile(os.path.join(uninterrupted, f'epoch_{e}.pth'))
    ckpt = load_checkpoint(os.path.join(uninterrupted, f'epoch_{EPOCHS}.pth'))
    assert ckpt['meta']['epoch'] == EPOCHS and 'rng_state' in ckpt
    rows = scalar_rows(uninterrupted)
    losses = [r['loss'] for r in rows if 'loss' in r]
    assert len(losses) == EPOCHS * 8 and all(map(lambda v: v == v, losses))  # no NaN
    assert any('coco/bbox_mAP' in r for r in rows)


def test_killed_run_resumes_to_bit_identical_weights(coco_root, uninterrupted, tmp_path):
    work = str(tmp_path / 'killed')
    cmd = [
        python(), 'tools/train.py', DET_CONFIG, '--work-dir', work, '--cfg-options',
        *det_options(coco_root, EPOCHS)
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = os.path.join(work, 'epoch_1.pth')
    deadline = time.time() + 300
    while not os.path.exists(first) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # well inside epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(work, f'epoch_{EPOCHS}.pth')), \
        'the run finished before it could be killed'

    out = run(cmd + ['--resume'])
    assert 'resumed epoch: 1' in out or 'resumed epoch: 2' in out, out[-2000:]
    a = _weights(os.path.join(uninterrupted, f'epoch_{EPOCHS}.pth'))
    b = _weights(os.path.join(work, f'epoch_{EPOCHS}.pth'))
    assert list(a) == list(b)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f'{len(different)} tensors differ, e.g. {different[:3]}'


def test_resume_from_an_explicit_checkpoint_continues(coco_root, uninterrupted, tmp_path):
    work = str(tmp_path / 'explicit')
    src = os.path.join(uninterrupted, 'epoch_2.pth')
    out = run([
        python(), 'tools/train.py', DET_CONFIG, '--work-dir', work, '--resume', src,
        '--cfg-options', *det_options(coco_root, EPOCHS)
    ])
    assert not os.path.exists(os.path.join(work, 'epoch_1.pth'))
    ckpt = load_checkpoint(os.path.join(work, f'epoch_{EPOCHS}.pth'))
    assert ckpt['meta']['epoch'] == EPOCHS
    a = _weights(os.path.join(uninterrupted, f'epoch_{EPOCHS}.pth'))
    assert all(torch.equal(a[k], v) for k, v in ckpt['state_dict'].items())
    assert 'resumed epoch: 2' in out and 'Epoch(train) [1]' not in out


def test_test_tool_evaluates_and_dumps(coco_root, uninterrupted, tmp_path):
    out_pkl = str(tmp_path / 'preds.pkl')
    out = run([
        python(), 'tools/test.py', DET_CONFIG,
        os.path.join(uninterrupted, f'epoch_{EPOCHS}.pth'), '--work-dir',
        str(tmp_path / 'test'), '--out', out_pkl, '--cfg-options', *det_options(coco_root, EPOCHS)
    ])
    assert 'coco/bbox_mAP' in out
    assert os.path.getsize(out_pkl) > 0


def test_cli_errors_name_the_bad_input(tmp_path):
    proc = subprocess.run([python(), 'tools/train.py', 'configs/nope.py'],
                          cwd=ROOT,
                          capture_output=True,
                          text=True)
    assert proc.returncode != 0 and 'configs/nope.py' in proc.stderr
    proc = subprocess.run(
        [python(), 'tools/train.py', DET_CONFIG, '--resume',
         str(tmp_path / 'missing.pth')],
        cwd=ROOT,
        capture_output=True,
        text=True)
    assert proc.returncode != 0 and 'missing.pth' in proc.stderr


def test_export_tool_strips_training_state(uninterrupted, tmp_path):
    src = os.path.join(uninterrupted, f'epoch_{EPOCHS}.pth')
    dst = str(tmp_path / 'deploy.pth')
    out = run([python(), 'tools/export.py', src, dst, '--drop', 'bbox_head.retina_reg'])
    assert 'dropped 2 keys' in out
    exported = torch.load(dst, weights_only=True)
    assert set(exported) == {'state_dict', 'meta'}
    keys = set(exported['state_dict'])
    assert not any(k.startswith('bbox_head.retina_reg') for k in keys)
    full = _weights(src)
    assert keys == set(full) - {'bbox_head.retina_reg.weight', 'bbox_head.retina_reg.bias'}
    assert exported['meta']['epoch'] == EPOCHS


def _broken_coco(coco_root, tmp_path, edit):
    import json
    import shutil
    root = str(tmp_path / 'coco')
    shutil.copytree(coco_root, root)
    path = os.path.join(root, 'annotations', 'instances_train.json')
    with open(path) as f:
        data = json.load(f)
    text = edit(data)
    with open(path, 'w') as f:
        f.write(text if isinstance(text, str) else json.dumps(data))
    return root, path


@pytest.mark.parametrize('fault,words', [
    ("category", "has category_id 99, which is not among the file's categories"),
    ('truncated', 'is not valid JSON'),
])
def test_a_broken_annotation_file_is_named(coco_root, tmp_path, fault, words):
    import json

    def edit(data):
        if fault == 'category':
            data['annotations'][3]['category_id'] = 99
            return None
        text = json.dumps(data)
        return text[:len(text) // 2]

    root, path = _broken_coco(coco_root, tmp_path, edit)
    proc = subprocess.run([
        python(), 'tools/train.py', DET_CONFIG, '--work-dir',
        str(tmp_path / 'w'), '--cfg-options', *det_options(root, 1)
    ],
                          cwd=ROOT,
                          capture_output=True,
                          text=True)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert 'instances_train.json' in last and words in last, proc.stderr[-3000:]


def test_resume_from_a_damaged_checkpoint_names_it(coco_root, uninterrupted, tmp_path):
    src = os.path.join(uninterrupted, 'epoch_1.pth')
    bad = str(tmp_path / 'cut.pth')
    with open(src, 'rb') as f:
        data = f.read()
    with open(bad, 'wb') as f:
        f.write(data[:len(data) // 3])
    proc = subprocess.run([
        python(), 'tools/train.py', DET_CONFIG, '--work-dir',
        str(tmp_path / 'w'), '--resume', bad, '--cfg-options', *det_options(coco_root, EPOCHS)
    ],
                          cwd=ROOT,
                          capture_output=True,
                          text=True)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('plugins.core.checkpoint.TruncatedCheckpointError') and 'cut.pth' in last
    assert 'weights_only' not in proc.stderr
