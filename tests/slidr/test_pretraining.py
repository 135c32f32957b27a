"""SLidR pre-training data and model on the synthetic nuScenes tree."""
import math

import pytest
import torch

pytest.importorskip('nuscenes')
pytest.importorskip('mmengine')

from plugins.testing.nuscenes import make_nuscenes_synthetic


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    return make_nuscenes_synthetic(str(tmp_path_factory.mktemp('nus')), samples_per_scene=2)


def _dataset(root, **kw):
    import plugins  # noqa: F401
    from plugins.slidr.mmengine import NuScenesSLidRDataset
    return NuScenesSLidRDataset(root, split='mini_train', crop=(48, 88), min_pairs=32, **kw)


def test_items_pairings_and_collate(root):
    from plugins.slidr.mmengine import slidr_collate
    ds = _dataset(root)
    assert len(ds) == 2
    item = ds[0]
    v = item['coords'].shape[0]
    assert item['feats'].shape == (v, 1) and item['images'].shape == (6, 3, 48, 88)
    p = item['pairs']
    assert p.shape[1] == 4 and p.shape[0] > 100
    assert p[:, 0].max() < v and p[:, 1].max() < 6
    assert (p[:, 2] >= 0).all() and (p[:, 2] < 48).all() and (p[:, 3] < 88).all()
    assert int(item['superpixels'].max()) < 150
    batch = slidr_collate([item, ds[1]])
    assert batch['coords'].shape[1] == 4 and set(batch['coords'][:, 0].tolist()) == {0, 1}
    second = batch['pairs'][p.shape[0]:]
    assert second[:, 0].min() >= v and second[:, 1].min() >= 6
    val = _dataset(root, augment=False)
    a, b = val[0], val[0]
    assert torch.equal(a['pairs'], b['pairs']) and torch.equal(a['images'], b['images'])
    with pytest.raises(ValueError, match="unknown nuScenes split 'nope'"):
        from plugins.slidr.mmengine import NuScenesSLidRDataset
        NuScenesSLidRDataset(root, split='nope')


def test_model_loss_and_frozen_teacher(root):
    from plugins.slidr.mmengine import SLidRPretrainer, slidr_collate
    ds = _dataset(root)
    torch.manual_seed(0)
    model = SLidRPretrainer(
        student=dict(layers=(1, ) * 8, planes=(8, 8, 16, 16, 16, 8, 8, 8), init_dim=8), dim=8)
    model.train()
    out = model(**slidr_collate([ds[0]]))
    assert out['kept'] > 10 and math.isfinite(out['loss'].item())
    out['loss'].backward()
    assert model.student.final.weight.grad.abs().sum() > 0
    assert model.teacher.head.proj.weight.grad.abs().sum() > 0
    assert not model.teacher.encoder.training
    assert all(p.grad is None for p in model.teacher.encoder.parameters())
    assert model.training_only_modules == ('teacher', )


def test_a_nan_lidar_feature_is_skipped_and_named(root, monkeypatch):
    import plugins.core.mmengine.nonfinite as guard
    from plugins.core.mmengine.nonfinite import NonFiniteSkipOptimWrapper
    from plugins.slidr.mmengine import SLidRPretrainer, slidr_collate
    from tests.guard_check import check_guard
    messages = []
    monkeypatch.setattr(guard, 'print_log', lambda msg, **kw: messages.append(msg))
    ds = _dataset(root)
    torch.manual_seed(0)
    model = SLidRPretrainer(
        student=dict(layers=(1, ) * 8, planes=(8, 8, 16, 16, 16, 8, 8, 8), init_dim=8), dim=8)
    params = [p for p in model.parameters() if p.requires_grad]
    wrapper = NonFiniteSkipOptimWrapper(torch.optim.SGD(params, lr=0.1, momentum=0.9))
    clean = slidr_collate([ds[0]])
    bad = slidr_collate([ds[0]])
    bad['feats'][0, 0] = float('nan')
    assert check_guard(model, wrapper, bad, clean, messages) == 'loss'
