"""DSD's two Runner paths resume bit-identically after SIGKILL.

3D DynUNet (epoch-based, MONAI's random crops and flips in ``MSDDataset``) and
mmseg's 2D UNet (iteration-based: mmengine fast-forwards the data loader on
resume, replaying the pipeline). Per-sample seeds make both exact: final weights
and optimizer state equal an uninterrupted run's, tensor for tensor.
"""
import os
import signal
import subprocess
import time

import pytest
import torch

from plugins.core.checkpoint import load_checkpoint

from .conftest import ROOT, python, run

pytestmark = pytest.mark.slow

CFG_3D = 'configs/dsd/dynunet_dsd_1xb1-16e_msd-demo.py'
CFG_2D = 'configs/dsd/unet-s5-d16_fcn_dsd_1xb4-600it_demo-shapes2d-64x64.py'


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    from plugins.dsd.msd import make_msd_synthetic
    from plugins.dsd.shapes2d import make_shapes2d
    base = tmp_path_factory.mktemp('dsd_resume')
    return dict(msd=make_msd_synthetic(str(base / 'msd'), num_train=6, num_test=0, size=32,
                                       num_classes=3),
                shapes=make_shapes2d(str(base / 'shapes2d'), num_train=12, num_val=2))


def _case(name, data):
    """(config, options, first checkpoint to wait for, final checkpoint)."""
    if name == '3d':
        root = data['msd']
        return CFG_3D, [f'train_dataloader.dataset.task_dir={root}',
                        f'val_dataloader.dataset.task_dir={root}',
                        f'test_dataloader.dataset.task_dir={root}',
                        'train_cfg.max_epochs=4', 'train_cfg.val_interval=100',
                        'default_hooks.checkpoint.interval=1',
                        'default_hooks.logger.interval=1'], 'epoch_1.pth', 'epoch_4.pth'
    root = data['shapes']
    return CFG_2D, [f'train_dataloader.dataset.data_root={root}',
                    f'val_dataloader.dataset.data_root={root}',
                    f'test_dataloader.dataset.data_root={root}',
                    'train_cfg.max_iters=16', 'train_cfg.val_interval=1000',
                    'default_hooks.checkpoint.interval=4', 'default_hooks.logger.interval=1',
                    'param_scheduler.0.end=16'], 'iter_4.pth', 'iter_16.pth'


def _state(path):
    ckpt = load_checkpoint(path)
    return ckpt['state_dict'], ckpt['optimizer']


def _differences(a, b, prefix=''):
    if isinstance(a, torch.Tensor):
        return [] if torch.equal(a, b) else [prefix]
    if isinstance(a, dict):
        if a.keys() != b.keys():
            return [f'{prefix} keys']
        return [d for k in a for d in _differences(a[k], b[k], f'{prefix}.{k}')]
    if isinstance(a, (list, tuple)):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f'{prefix}[{i}]')]
    return [] if a == b else [prefix]


@pytest.mark.parametrize('name', ['3d', '2d'])
def test_killed_dsd_run_resumes_bit_identically(name, data, tmp_path):
    config, opts, first, last = _case(name, data)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    straight = str(tmp_path / 'straight')
    run([python(), 'tools/train.py', config, '--work-dir', straight, '--cfg-options', *opts],
        env=env)

    work = str(tmp_path / 'killed')
    cmd = [python(), 'tools/train.py', config, '--work-dir', work, '--cfg-options', *opts]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not os.path.exists(os.path.join(work, first)) and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(work, last)), 'finished before it was killed'

    run(cmd + ['--resume'], env=env)
    weights_a, optim_a = _state(os.path.join(straight, last))
    weights_b, optim_b = _state(os.path.join(work, last))
    differ = _differences(weights_a, weights_b)
    assert not differ, f'{len(differ)}/{len(weights_a)} weight tensors differ, e.g. {differ[:3]}'
    differ = _differences(optim_a, optim_b)
    assert not differ, f'optimizer state differs: {differ[:3]}'
