"""``torchvision://`` weights without an importable torchvision: a clear error
naming the config key and the alternatives, before any work."""
import glob
import os.path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_training_config_with_torchvision_weights_fails_before_work_naming_the_key(
        monkeypatch, tmp_path):
    import sys
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    import train
    from runner_setup import check_torchvision_weights, load_config

    from plugins.core.mmengine import checkpoint as cm
    monkeypatch.setattr(cm, 'torchvision_available', lambda: False)
    config = osp.join(ROOT, 'configs/golsd/dino-4scale_r50_golsd_8xb2-12e_coco.py')
    cfg = load_config(config)  # loading it (test, export, analysis) needs no weights
    with pytest.raises(cm.TorchvisionWeightsError, match='init_cfg=None'):
        train.main([config, '--work-dir', str(tmp_path)])  # stops before building the runner
    assert not list(tmp_path.iterdir())
    with pytest.raises(cm.TorchvisionWeightsError) as err:
        check_torchvision_weights(cfg)
    text = str(err.value)
    assert "'torchvision://resnet50' (model.backbone.init_cfg.checkpoint)" in text
    assert 'model.backbone.init_cfg=None' in text and 'resnet50-0676ba61.pth' in text
    assert isinstance(err.value, ModuleNotFoundError)  # what callers catching the old error see


def test_config_passes_when_the_weights_are_a_local_file(monkeypatch, tmp_path):
    from runner_setup import check_torchvision_weights, load_config

    from plugins.core.mmengine import checkpoint as cm
    monkeypatch.setattr(cm, 'torchvision_available', lambda: False)
    cfg = load_config(
        osp.join(ROOT, 'configs/golsd/dino-4scale_r50_golsd_8xb2-12e_coco.py'),
        {'model.backbone.init_cfg.checkpoint': str(tmp_path / 'r50.pth')})
    check_torchvision_weights(cfg)  # no torchvision:// left
    assert cfg.model.backbone.init_cfg.checkpoint.endswith('r50.pth')


def test_checkpoint_loader_scheme_gives_the_same_message(monkeypatch):
    from mmengine.runner import CheckpointLoader

    import plugins  # noqa: F401  (registers the scheme)
    from plugins.core.mmengine import checkpoint as cm
    monkeypatch.setattr(cm, 'torchvision_available', lambda: False)
    with pytest.raises(cm.TorchvisionWeightsError, match='torchvision://resnet18.*init_cfg=None'):
        CheckpointLoader.load_checkpoint('torchvision://resnet18')


def test_with_torchvision_the_host_loader_is_used(monkeypatch):
    from mmengine.runner import CheckpointLoader

    import plugins  # noqa: F401
    from plugins.core.mmengine import checkpoint as cm
    calls = []
    monkeypatch.setattr(cm, 'torchvision_available', lambda: True)
    monkeypatch.setattr(cm, '_MMENGINE_TORCHVISION', lambda f, m=None: calls.append(f) or {})
    assert CheckpointLoader.load_checkpoint('torchvision://resnet50') == {}
    assert calls == ['torchvision://resnet50']


def test_demo_and_test_configs_never_need_torchvision():
    from mmengine.config import Config
    demo = [
        p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
        if 'demo' in osp.basename(p) or '_base_' in p
    ]
    assert len(demo) >= 6
    for path in demo:
        assert 'torchvision://' not in Config.fromfile(path).pretty_text, path
