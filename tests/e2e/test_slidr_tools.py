"""SLidR pre-training through tools/train.py on the synthetic nuScenes tree."""
import math

import pytest

from .conftest import python, run, scalar_rows

pytestmark = pytest.mark.slow

CFG = 'configs/slidr/slidr_tiny-unet_1xb2-8e_demo-nuscenes.py'


def test_pretraining_lowers_the_loss(tmp_path):
    pytest.importorskip('nuscenes')
    from plugins.slidr.nuscenes_synth import make_nuscenes_synthetic
    root = make_nuscenes_synthetic(str(tmp_path / 'nus'), samples_per_scene=4)
    work = str(tmp_path / 'work')
    run([python(), 'tools/train.py', CFG, '--work-dir', work, '--cfg-options',
         f'train_dataloader.dataset.data_root={root}', 'train_cfg.max_epochs=4',
         'param_scheduler.0.T_max=4', 'default_hooks.checkpoint.interval=4'])
    rows = [r for r in scalar_rows(work) if 'loss' in r]
    assert len(rows) == 8
    # InfoNCE over K kept superpixels starts near log K (chance); compare with it
    excess = [r['loss'] - math.log(r['kept']) for r in rows]
    assert sum(excess[-4:]) / 4 < sum(excess[:4]) / 4 - 0.1, excess
