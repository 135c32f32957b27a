"""SLidR pre-training through tools/train.py on the synthetic nuScenes tree."""
import math

import pytest

from .conftest import python, run, scalar_rows

pytestmark = pytest.mark.slow

CFG = 'configs/slidr/slidr_tiny-unet_1xb2-8e_demo-nuscenes.py'

PROBE = 'configs/slidr/tiny-unet_linear-probe_1xb2-8e_demo-nuscenes.py'


def test_pretraining_lowers_the_loss_and_the_linear_probe_runs(tmp_path):
    pytest.importorskip('nuscenes')
    from plugins.testing.nuscenes import make_nuscenes_synthetic
    root = make_nuscenes_synthetic(str(tmp_path / 'nus'), samples_per_scene=4)
    work = str(tmp_path / 'work')
    run([
        python(), 'tools/train.py', CFG, '--work-dir', work, '--cfg-options',
        f'train_dataloader.dataset.data_root={root}', 'train_cfg.max_epochs=4',
        'param_scheduler.0.T_max=4', 'default_hooks.checkpoint.interval=4'
    ])
    rows = [r for r in scalar_rows(work) if 'loss' in r]
    assert len(rows) == 8
    # InfoNCE over K kept superpixels starts near log K (chance); compare with it
    excess = [r['loss'] - math.log(r['kept']) for r in rows]
    assert sum(excess[-4:]) / 4 < sum(excess[:4]) / 4 - 0.1, excess
    # the linear probe starts from the pre-trained student and reports point mIoU
    probe = str(tmp_path / 'probe')
    run([
        python(), 'tools/train.py', PROBE, '--work-dir', probe, '--cfg-options',
        *[f'{k}_dataloader.dataset.data_root={root}'
          for k in ('train', 'val', 'test')], f'model.pretrained={work}/epoch_4.pth',
        'train_cfg.max_epochs=2', 'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2'
    ])
    val = [r for r in scalar_rows(probe) if 'lidarseg/mIoU' in r]
    assert val and 0.0 <= val[-1]['lidarseg/mIoU_present'] <= 1.0
    assert 'loss_lovasz' in [k for r in scalar_rows(probe) for k in r]
