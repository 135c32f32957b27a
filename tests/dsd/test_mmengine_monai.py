"""3D MONAI networks on the mmengine side: model, MSD dataset, collate, metric."""
import pytest
import torch

from plugins.core.checkpoint import export_state_dict
from plugins.dsd.functional import SLOTS

C = 3
NET = dict(
    type='DynUNet',
    spatial_dims=3,
    in_channels=1,
    out_channels=C,
    kernel_size=[3] * 5,
    strides=[1, 2, 2, 2, 2],
    upsample_kernel_size=[2, 2, 2, 2],
    filters=[4, 8, 16, 32, 40],
    res_block=True,
    norm_name='instance')


def _model(taps=None, loss=None, **kw):
    from plugins.dsd.mmengine import MonaiSegmentor
    torch.manual_seed(0)
    return MonaiSegmentor(dict(NET), C, (32, 32, 32), dsd_taps=taps, loss_dsd=loss, **kw)


@pytest.fixture(scope='module')
def task(tmp_path_factory):
    from plugins.testing.msd import make_msd_synthetic
    return make_msd_synthetic(
        str(tmp_path_factory.mktemp('msd')), num_train=5, num_test=1, size=32, num_classes=C)


def test_loss_mode_dsd_and_plain():
    x = torch.randn(2, 1, 32, 32, 32)
    y = torch.randint(0, C, (2, 1, 32, 32, 32))
    dsd = _model(dict(preset='dynunet'), dict(type='DSDLoss', temperature=3.0))
    dsd.train()
    out = dsd(x, y, mode='loss')
    assert [k for k in out if 'loss' in k] == ['loss_dsd']
    assert len([k for k in out if k.startswith('dsd_')]) == 11
    out['loss_dsd'].backward()
    assert dsd.network.dsd_heads['L4'].conv.weight.grad.abs().sum() > 0
    plain = _model()
    plain.train()
    loss = plain(x, y, mode='loss')
    assert list(loss) == ['loss_dice_ce'] and torch.isfinite(loss['loss_dice_ce'])
    assert not hasattr(plain.network, 'dsd_heads')


def test_predict_mode_is_the_stock_network_with_sliding_windows():
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import DynUNet
    model = _model(dict(preset='dynunet'))
    model.eval()
    stock = DynUNet(**{k: v for k, v in NET.items() if k != 'type'})
    state, _ = export_state_dict(model, strip_prefix='network')
    stock.load_state_dict(state, strict=True)
    stock.eval()
    x = torch.randn(1, 1, 40, 36, 32)  # not a multiple of the ROI: windows overlap
    y = torch.zeros(1, 1, 40, 36, 32, dtype=torch.long)
    with torch.no_grad():
        out = model(x, y, mode='predict')
        ref = sliding_window_inference(x, (32, 32, 32), 1, stock, overlap=0.25)
    assert torch.equal(out[0]['pred'], ref.argmax(1, keepdim=True)[0])
    assert out[0]['label'].shape == (1, 40, 36, 32)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match=r'model.dsd_taps=dict\(preset=...\)'):
        _model(loss=dict(temperature=3.0))
    with pytest.raises(ValueError, match="'presett' \\(did you mean 'preset'\\?\\)"):
        _model(dict(presett='dynunet'))
    with pytest.raises(ValueError, match="'temprature' \\(did you mean 'temperature'\\?\\)"):
        _model(dict(preset='dynunet'), dict(type='DSDLoss', temprature=3.0))
    with pytest.raises(KeyError, match='DSDLoss'):
        _model(dict(preset='dynunet'), dict(type='DSDLos'))
    with pytest.raises(ValueError, match=r"model.loss_dsd may not set \['taps'\]"):
        _model(dict(preset='dynunet'), dict(taps=None))
    with pytest.raises(ValueError, match='strategy must be one of'):
        _model(dict(preset='dynunet'), dict(strategy='fast'))
    with pytest.raises(ValueError, match='set one or the other'):
        _model(dict(preset='dynunet'), dsd=dict(preset='dynunet'))
    with pytest.raises(ValueError, match="not found in monai.networks.nets"):
        from plugins.dsd.mmengine import build_monai_network
        build_monai_network(dict(type='NoSuchNet'))
    with pytest.raises(ValueError, match="mode must be"):
        _model()(torch.zeros(1, 1, 32, 32, 32), mode='train')


def test_split_follows_the_reference_rule():
    import random

    from plugins.dsd.mmengine.dataset import split_cases
    split = split_cases(10, num_val=3, num_test=2, seed=0)
    rest = list(range(8))
    random.Random(0).shuffle(rest)
    assert split == {'train': rest[:5], 'val': rest[5:], 'test': [8, 9]}
    with pytest.raises(ValueError, match='nothing to train on'):
        split_cases(3, num_val=2, num_test=1)


def test_augmentation_repeats_under_the_same_numpy_seed(task):
    import numpy as np

    from plugins.dsd.mmengine import MSDDataset

    def crops():
        np.random.seed(7)
        data = MSDDataset(task, 'train', num_val=2, roi_size=(16, 16, 16), num_samples=2)
        return [d['inputs'] for i in range(len(data)) for d in data[i]]

    first, second = crops(), crops()
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    np.random.seed(8)
    data = MSDDataset(task, 'train', num_val=2, roi_size=(16, 16, 16), num_samples=2)
    other = [d['inputs'] for i in range(len(data)) for d in data[i]]
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_dataset_collate_and_metric_on_the_real_format(task):
    from plugins.dsd.mmengine import DiceHD95Metric, MSDDataset, msd_collate
    train = MSDDataset(task, 'train', num_val=2, roi_size=(16, 16, 16), num_samples=2)
    val = MSDDataset(task, 'val', num_val=2)
    assert len(train) == 3 and len(val) == 2
    batch = msd_collate([train[0], train[1]])
    assert batch['inputs'].shape == (4, 1, 16, 16, 16)
    assert batch['data_samples'].dtype == torch.long
    assert set(batch['data_samples'].unique().tolist()) <= {0, 1, 2}
    item = val[0]
    assert item['inputs'].shape == (1, 32, 32, 32) and type(item['inputs']) is torch.Tensor
    metric = DiceHD95Metric(num_classes=C)
    label = item['data_samples']
    metric.process(None, [dict(pred=label, label=label)])
    shifted = torch.roll(label, 2, dims=1)
    metric.process(None, [dict(pred=shifted, label=label)])
    res = metric.compute_metrics(metric.results)
    perfect = metric.results[0]
    assert (perfect['dice'] == 1).all() and (perfect['hd95'] == 0).all()
    assert 0 < res['dice'] < 1 and res['hd95'] == pytest.approx(
        (0 + metric.results[1]['hd95'].mean()) / 2)
    with pytest.raises(ValueError, match='differ in shape'):
        metric.process(None, [dict(pred=label[:, :4], label=label)])


def test_lean_mode_through_the_model():
    x = torch.randn(1, 1, 32, 32, 32)
    y = torch.randint(0, C, (1, 1, 32, 32, 32))
    a = _model(dict(preset='dynunet'))
    b = _model(dict(preset='dynunet'), dict(type='DSDLoss', strategy='lean'))
    a.train(), b.train()
    la, lb = a(x, y, mode='loss'), b(x, y, mode='loss')
    assert lb['loss_dsd'].item() == pytest.approx(la['loss_dsd'].item(), rel=1e-6)
    assert set(la) == set(lb) and set(SLOTS[:1]) <= {k[7:] for k in la if k.startswith('dsd_ds')}
    assert a.dsd_loss.strategy == 'straightforward' and b.dsd_loss.strategy == 'lean'


def test_the_deprecated_block_warns_and_builds_the_same_model():
    x = torch.randn(1, 1, 32, 32, 32)
    y = torch.randint(0, C, (1, 1, 32, 32, 32))
    with pytest.warns(
            DeprecationWarning,
            match=r"dsd_taps=\{'preset': 'dynunet'\} and "
            r"loss_dsd=\{'type': 'DSDLoss', 'temperature': 2.0, "
            r"'strategy': 'lean'\}"):
        old = _model(dsd=dict(preset='dynunet', temperature=2.0, mode='lean'))
    new = _model(dict(preset='dynunet'), dict(type='DSDLoss', temperature=2.0, strategy='lean'))
    assert old.dsd_loss.strategy == 'lean' and old.dsd_loss.temperature == 2.0
    old.train(), new.train()
    assert torch.equal(old(x, y, mode='loss')['loss_dsd'], new(x, y, mode='loss')['loss_dsd'])


def test_loss_weight_scales_the_total_and_the_logged_terms():
    x = torch.randn(1, 1, 32, 32, 32)
    y = torch.randint(0, C, (1, 1, 32, 32, 32))
    a = _model(dict(preset='dynunet'), dict(type='DSDLoss'))
    b = _model(dict(preset='dynunet'), dict(type='DSDLoss', loss_weight=0.5))
    a.train(), b.train()
    la, lb = a(x, y, mode='loss'), b(x, y, mode='loss')
    for k in la:
        assert lb[k].item() == pytest.approx(0.5 * la[k].item(), rel=1e-6)


def test_a_nan_voxel_is_skipped_and_named(monkeypatch):
    import plugins.core.mmengine.nonfinite as guard
    from plugins.core.mmengine.nonfinite import NonFiniteSkipOptimWrapper
    from tests.guard_check import check_guard
    messages = []
    monkeypatch.setattr(guard, 'print_log', lambda msg, **kw: messages.append(msg))
    model = _model(dict(preset='dynunet'), dict(temperature=3.0))
    wrapper = NonFiniteSkipOptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    torch.manual_seed(2)
    x = torch.randn(1, 1, 32, 32, 32)
    y = torch.randint(0, C, (1, 1, 32, 32, 32))
    bad = x.clone()
    bad[0, 0, 3, 4, 5] = float('nan')
    key = check_guard(model, wrapper, dict(inputs=bad, data_samples=y),
                      dict(inputs=x, data_samples=y), messages)
    assert key == 'loss_dsd' or key.startswith('dsd_')
