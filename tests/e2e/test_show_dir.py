"""``tools/test.py --show-dir`` draws every test image with the host's visualizer."""
import glob
import os

import pytest
import torch

from .conftest import ROOT, det_options, python, run

GOLSD = 'configs/golsd/dino-tiny_r18_golsd_1xb8-12e_demo-coco.py'
DSD_2D = 'configs/dsd/unet-s5-d16_fcn_dsd_1xb4-600it_demo-shapes2d-64x64.py'


def _fresh_checkpoint(config: str, path: str, options=None) -> str:
    """The config's model, untrained, saved as a checkpoint (drawing needs no skill)."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    import plugins  # noqa: F401
    cfg = Config.fromfile(os.path.join(ROOT, config))
    if options:
        cfg.merge_from_dict(options)
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


def _images(folder: str):
    return [
        p for p in glob.glob(os.path.join(folder, '**', '*'), recursive=True)
        if p.endswith(('.png', '.jpg'))
    ]


@pytest.mark.slow
def test_golsd_detections_drawn_for_every_val_image(coco_root, tmp_path):
    ckpt = _fresh_checkpoint(GOLSD, str(tmp_path / 'golsd.pth'))
    show = tmp_path / 'vis'
    run([
        python(), 'tools/test.py', GOLSD, ckpt, '--work-dir',
        str(tmp_path / 't'), '--show-dir',
        str(show), '--cfg-options', *det_options(coco_root, 1)
    ])
    drawn = _images(str(show))
    assert len(drawn) == 8, drawn  # the fixture's 8 val images
    from PIL import Image
    assert Image.open(drawn[0]).size == (192, 96)  # ground truth beside the prediction


@pytest.mark.slow
def test_mmdet_own_test_script_draws_golsd_detections(coco_root, tmp_path):
    """mmdet's unmodified tools/test.py (shipped in mmdet's .mim folder) with a
    GO-LSD config and ``--show-dir``."""
    import mmdet
    script = os.path.join(os.path.dirname(mmdet.__file__), '.mim', 'tools', 'test.py')
    ckpt = _fresh_checkpoint(GOLSD, str(tmp_path / 'golsd.pth'))
    run([
        python(), script, GOLSD, ckpt, '--work-dir',
        str(tmp_path / 't'), '--show-dir', 'vis', '--cfg-options', *det_options(coco_root, 1)
    ])
    assert len(_images(str(tmp_path / 't'))) == 8  # <work-dir>/<timestamp>/vis/*.png


@pytest.mark.slow
def test_detinferencer_runs_a_golsd_checkpoint(coco_root, tmp_path):
    """mmdet's high-level ``DetInferencer`` with a GO-LSD config and checkpoint:
    predictions and the drawn picture."""
    from mmdet.apis import DetInferencer

    import plugins  # noqa: F401
    ckpt = _fresh_checkpoint(GOLSD, str(tmp_path / 'golsd.pth'))
    inferencer = DetInferencer(model=os.path.join(ROOT, GOLSD), weights=ckpt, device='cpu')
    image = sorted(glob.glob(os.path.join(coco_root, 'val', '*.png')))[0]
    result = inferencer(image, out_dir=str(tmp_path / 'out'), no_save_pred=False)
    pred = result['predictions'][0]
    assert len(pred['bboxes']) == len(pred['scores']) == len(pred['labels']) > 0
    assert all(len(box) == 4 for box in pred['bboxes'])
    assert len(_images(str(tmp_path / 'out' / 'vis'))) == 1
    assert glob.glob(str(tmp_path / 'out' / 'preds' / '*.json'))


@pytest.mark.slow
def test_dsd_mmseg_segmentations_drawn_for_every_val_image(tmp_path):
    from plugins.testing.shapes2d import make_shapes2d
    root = make_shapes2d(str(tmp_path / 'shapes2d'), num_train=2, num_val=4)
    ckpt = _fresh_checkpoint(DSD_2D, str(tmp_path / 'dsd.pth'))
    show = tmp_path / 'vis'
    run([
        python(),
        'tools/test.py',
        DSD_2D,
        ckpt,
        '--work-dir',
        str(tmp_path / 't'),
        '--show-dir',
        str(show),
        '--cfg-options',
        f'test_dataloader.dataset.data_root={root}',
        # a test run must not read the training data (mmseg's hook reads runner.iter)
        f'train_dataloader.dataset.data_root={tmp_path / "absent"}'
    ])
    assert len(_images(str(show / 'vis_data' / 'vis_image'))) == 4


def test_show_dir_without_a_visualisation_hook_says_what_to_add():
    from mmengine.config import Config
    from runner_setup import enable_show_dir
    with pytest.raises(ValueError, match="visualization=dict.type='DetVisualizationHook'"):
        enable_show_dir(Config(dict(default_hooks=dict(logger=dict(type='LoggerHook')))), 'x')
    det = Config(dict(default_hooks=dict(visualization=dict(type='DetVisualizationHook'))))
    assert enable_show_dir(det, 'out') == os.path.abspath('out')
    assert det.default_hooks.visualization.draw is True
    seg = Config(
        dict(
            default_hooks=dict(visualization=dict(type='SegVisualizationHook')),
            visualizer=dict(type='SegLocalVisualizer')))
    assert enable_show_dir(seg, 'out').endswith(os.path.join('out', 'vis_data', 'vis_image'))
    assert seg.default_hooks.visualization.interval == 1


def test_a_test_run_keeps_no_training_parts():
    from mmengine.config import Config
    from runner_setup import drop_training_parts
    cfg = Config(
        dict(
            train_dataloader=dict(batch_size=2),
            train_cfg=dict(max_iters=3),
            optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
            param_scheduler=[dict(type='LinearLR')],
            test_cfg=dict(type='TestLoop')))
    drop_training_parts(cfg)
    assert cfg.train_dataloader is None and cfg.train_cfg is None
    assert cfg.optim_wrapper is None and cfg.param_scheduler is None
    assert cfg.test_cfg == dict(type='TestLoop')
    assert 'auto_scale_lr' not in cfg  # absent keys stay absent
