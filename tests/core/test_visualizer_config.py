"""The plugin runtime's visualizer block: local scalars by default, TensorBoard
by one override (the ``tensorboard`` extra)."""
import glob
import os.path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = [
    'configs/dsd/dynunet_dsd_1xb1-16e_demo-msd.py',
    'configs/macil/macil-sd_1xb128-50e_xdviolence.py',
    'configs/slidr/slidr_sr-unet34_1xb4-50e_nuscenes.py',
    'configs/golsd/dino-tiny_r18_golsd_1xb8-12e_demo-coco.py',
    'configs/dsd/unet-s5-d16_fcn_dsd_1xb4-600it_demo-shapes2d-64x64.py'
]


@pytest.mark.parametrize('config', CONFIGS)
def test_every_plugin_config_has_a_visualizer_to_override(config):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.merge_from_dict({
        'visualizer.vis_backends':
        [dict(type='LocalVisBackend'),
         dict(type='TensorboardVisBackend')]
    })
    assert [b['type']
            for b in cfg.visualizer.vis_backends] == ['LocalVisBackend', 'TensorboardVisBackend']


def test_tensorboard_backend_writes_event_files(tmp_path):
    pytest.importorskip('tensorboard')
    from mmengine.config import Config
    from mmengine.registry import VISUALIZERS
    cfg = Config.fromfile(osp.join(ROOT, 'configs/_base_/plugin_runtime.py'))
    vis_cfg = dict(
        cfg.visualizer,
        name='tb_test',
        save_dir=str(tmp_path),
        vis_backends=[dict(type='LocalVisBackend'),
                      dict(type='TensorboardVisBackend')])
    vis = VISUALIZERS.build(vis_cfg)
    vis.add_scalars({'loss': 1.5, 'dsd_kd_enc3': 0.25}, step=1)
    vis.close()
    assert glob.glob(str(tmp_path / 'vis_data' / 'events.out.tfevents.*'))
    assert 'dsd_kd_enc3' in (tmp_path / 'vis_data' / 'scalars.json').read_text()
