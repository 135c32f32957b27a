"""Every plugin's training path resumes bit-identically after SIGKILL.

Each demo config is killed right after its first checkpoint, resumed with
``--resume``, and its final weights and optimizer state are compared with an
uninterrupted run's, tensor for tensor: GO-LSD on DINO and on Deformable-DETR,
DSD on the 3D DynUNet (epoch-based, MONAI's random crops) and on mmseg's 2D UNet
(iteration-based: mmengine fast-forwards the data loader on resume), MACIL-SD
(two optimizers), SLidR pre-training and SLidR fine-tuning. Per-sample seeds
(``SampleSeedSampler``) make the augmentations independent of what ran before.
"""
import os
import signal
import subprocess
import time

import pytest
import torch

from plugins.core.checkpoint import load_checkpoint

from .conftest import ROOT, det_options, python, run

pytestmark = pytest.mark.slow

CONFIGS = {
    'golsd-dino': 'configs/golsd/dino-tiny_r18_golsd_1xb8-12e_demo-coco.py',
    'golsd-deformable':
    'configs/golsd/deformable-detr-refine-twostage-tiny_r18_golsd_1xb8-12e_demo-coco.py',
    'dsd-3d': 'configs/dsd/dynunet_dsd_1xb1-16e_demo-msd.py',
    'dsd-2d': 'configs/dsd/unet-s5-d16_fcn_dsd_1xb4-600it_demo-shapes2d-64x64.py',
    'macil': 'configs/macil/macil-sd_1xb8-12e_demo-xdviolence.py',
    'slidr-pretrain': 'configs/slidr/slidr_tiny-unet_1xb2-8e_demo-nuscenes.py',
    'slidr-finetune': 'configs/slidr/tiny-unet_finetune_1xb2-4e_demo-semantickitti.py',
}


@pytest.fixture(scope='module')
def data(tmp_path_factory, coco_root):
    pytest.importorskip('nuscenes')
    from plugins.testing.msd import make_msd_synthetic
    from plugins.testing.nuscenes import make_nuscenes_synthetic
    from plugins.testing.semantickitti import make_semantickitti_synthetic
    from plugins.testing.shapes2d import make_shapes2d
    from plugins.testing.xdviolence import make_xdviolence_synthetic
    base = tmp_path_factory.mktemp('resume')
    return dict(
        coco=coco_root,
        msd=make_msd_synthetic(str(base / 'msd'), num_train=6, num_test=0, size=32, num_classes=3),
        shapes=make_shapes2d(str(base / 'shapes2d'), num_train=12, num_val=2),
        xdv=make_xdviolence_synthetic(
            str(base / 'xdv'), num_train=(4, 4), num_test=(1, 1), length=(8, 20)),
        nus=make_nuscenes_synthetic(str(base / 'nus'), samples_per_scene=2),
        kitti=make_semantickitti_synthetic(str(base / 'kitti'), scans_per_sequence=1, points=1500))


def _roots(keys, root):
    return [
        f'{k}_dataloader.dataset.{key}={root}' for k in ('train', 'val', 'test') for key in keys
    ]


def _case(name, data):
    """(options, first checkpoint to wait for, final checkpoint)."""
    epochs = [
        'train_cfg.max_epochs=3', 'train_cfg.val_interval=100',
        'default_hooks.checkpoint.interval=1', 'default_hooks.logger.interval=1'
    ]
    if name.startswith('golsd'):
        opts = det_options(
            data['coco'], 3,
            batch=8) + ['train_cfg.val_interval=100', 'param_scheduler.0.milestones=[2]']
        return opts, 'epoch_1.pth', 'epoch_3.pth'
    if name == 'dsd-3d':
        return _roots(['task_dir'], data['msd']) + epochs, 'epoch_1.pth', 'epoch_3.pth'
    if name == 'dsd-2d':
        return _roots(['data_root'], data['shapes']) + [
            'train_cfg.max_iters=16', 'train_cfg.val_interval=1000',
            'default_hooks.checkpoint.interval=4', 'default_hooks.logger.interval=1',
            'param_scheduler.0.end=16'
        ], 'iter_4.pth', 'iter_16.pth'
    if name == 'macil':
        root = data['xdv']
        return [
            f'train_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}', f'test_evaluator.gt_file={root}/gt.npy',
            'train_dataloader.batch_size=8', 'train_cfg.max_epochs=3',
            'default_hooks.checkpoint.interval=1', 'default_hooks.logger.interval=1'
        ], 'epoch_1.pth', 'epoch_3.pth'
    if name == 'slidr-pretrain':
        return [
            f'train_dataloader.dataset.data_root={data["nus"]}', 'train_cfg.max_epochs=3',
            'param_scheduler.0.T_max=3', 'default_hooks.checkpoint.interval=1',
            'default_hooks.logger.interval=1'
        ], 'epoch_1.pth', 'epoch_3.pth'
    return _roots(['data_root'], data['kitti']) + epochs + ['param_scheduler.0.T_max=3'
                                                            ], 'epoch_1.pth', 'epoch_3.pth'


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
        return [
            d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f'{prefix}[{i}]')
        ]
    return [] if a == b else [prefix]


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_killed_run_resumes_bit_identically(name, data, tmp_path):
    config = CONFIGS[name]
    opts, first, last = _case(name, data)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    straight = str(tmp_path / 'straight')
    run([python(), 'tools/train.py', config, '--work-dir', straight, '--cfg-options', *opts],
        env=env)

    work = str(tmp_path / 'killed')
    cmd = [python(), 'tools/train.py', config, '--work-dir', work, '--cfg-options', *opts]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not os.path.exists(os.path.join(work, first)) and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(work, last)), 'finished before it was killed'

    out = run(cmd + ['--resume'], env=env)
    assert 'resumed epoch' in out, out[-2000:]  # continued, not started again
    weights_a, optim_a = _state(os.path.join(straight, last))
    weights_b, optim_b = _state(os.path.join(work, last))
    differ = _differences(weights_a, weights_b)
    assert not differ, f'{len(differ)}/{len(weights_a)} weight tensors differ, e.g. {differ[:3]}'
    differ = _differences(optim_a, optim_b)
    assert not differ, f'optimizer state differs: {differ[:3]}'
