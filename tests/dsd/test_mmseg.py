"""DSD on mmseg's 2D UNet: taps, loss keys, ignore label, stock prediction."""
import copy

import pytest
import torch

pytest.importorskip('mmseg')

from plugins.core.checkpoint import export_state_dict
from plugins.dsd.functional import SLOTS, dsd_loss

DSD_CONFIG = 'configs/dsd/unet-s5-d16_fcn_dsd_1xb4-600it_demo-shapes2d-64x64.py'
C = 3


def _cfg():
    import os

    from mmengine.config import Config

    import plugins  # noqa: F401
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return Config.fromfile(os.path.join(root, DSD_CONFIG))


def _build(model_cfg):
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    torch.manual_seed(0)
    return MODELS.build(model_cfg)


def _samples(labels):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    out = []
    for lab in labels:
        s = SegDataSample(gt_sem_seg=PixelData(data=lab[None]))
        h, w = lab.shape
        s.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
        out.append(s)
    return out


@pytest.fixture(scope='module')
def model():
    return _build(_cfg().model)


def test_taps_2d_shapes_and_shared_heads(model):
    base = 16
    got = {s: (i.channels, i.scale) for s, i in model.dsd_taps.info.items()}
    assert got == dict(
        enc1=(base, 1),
        enc2=(2 * base, 2),
        enc3=(4 * base, 4),
        enc4=(8 * base, 8),
        dec4=(16 * base, 16),
        dec3=(8 * base, 8),
        dec2=(4 * base, 4),
        dec1=(2 * base, 2))
    assert sorted(model.backbone.dsd_heads) == ['L0', 'L1', 'L2', 'L3', 'L4']
    model.train()
    x = torch.randn(2, 3, 64, 64)
    model.extract_feat(x)
    maps = model.dsd_taps.pop_logits()
    assert {k: tuple(v.shape) for k, v in maps.items()} == {s: (2, C, 64, 64) for s in SLOTS[1:]}


def test_loss_keys_values_and_gradients(model):
    model.train()
    model.zero_grad()
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    labels = torch.randint(0, C, (2, 64, 64))
    losses = model.loss(x, _samples(labels))
    assert [k for k in losses if 'loss' in k] == ['loss_dsd']
    assert {k[4:]
            for k in losses if k.startswith('dsd_')
            } == ({f'ds_{s}'
                   for s in SLOTS[:5]} | {f'kd_{s}'
                                          for s in SLOTS[1:4] + SLOTS[5:8]})
    terms = [v for k, v in losses.items() if k.startswith('dsd_')]
    assert losses['loss_dsd'].item() == pytest.approx(sum(t.item() for t in terms), rel=1e-6)
    losses['loss_dsd'].backward()
    for name, head in model.backbone.dsd_heads.items():
        assert head.conv.weight.grad.abs().sum() > 0, name
    assert model.backbone.encoder[0][0].convs[0].conv.weight.grad.abs().sum() > 0


def test_ignore_label_leaves_every_term():
    # masking the right half with 255 == the loss on the left half alone
    torch.manual_seed(2)
    maps = {s: torch.randn(2, C, 4, 6, dtype=torch.float64) for s in SLOTS}
    labels = torch.randint(0, C, (2, 1, 4, 6))
    masked = labels.clone()
    masked[..., 3:] = 255
    total, terms = dsd_loss(maps, masked, ignore_index=255)
    crop = {s: v[..., :3] for s, v in maps.items()}
    want, want_terms = dsd_loss(crop, labels[..., :3])
    assert total.item() == pytest.approx(want.item(), rel=1e-12)
    for k in want_terms:
        assert terms[k].item() == pytest.approx(want_terms[k].item(), rel=1e-12), k
    with pytest.raises(ValueError, match=r'\[255\].*outside the class range'):
        dsd_loss(maps, masked)  # without ignore_index 255 is a bad label


def test_all_ignored_is_finite_zero_ce():
    maps = {s: torch.randn(1, C, 4, 4, requires_grad=True) for s in SLOTS}
    labels = torch.full((1, 1, 4, 4), 255)
    total, terms = dsd_loss(maps, labels, ignore_index=255)
    assert torch.isfinite(total)
    assert all(terms[f'kd_{s}'] == 0 for s in ('dec4', 'enc1'))
    total.backward()
    assert all(torch.isfinite(m.grad).all() for m in maps.values())


def test_config_errors_are_named():
    cfg = _cfg()
    with_aux = copy.deepcopy(cfg.model)
    with_aux.auxiliary_head = dict(
        type='FCNHead',
        in_channels=32,
        in_index=3,
        channels=16,
        num_convs=1,
        num_classes=C,
        concat_input=False)
    with pytest.raises(ValueError, match='auxiliary_head=None'):
        _build(with_aux)
    bad = copy.deepcopy(cfg.model)
    bad.loss_dsd = dict(type='DSDLoss', temprature=3.0)
    with pytest.raises(
            ValueError,
            match=r"unknown key in model.loss_dsd: 'temprature' "
            r"\(did you mean 'temperature'\?\)"):
        _build(bad)
    bad = copy.deepcopy(cfg.model)
    bad.dsd_taps = dict(prest='mmseg_unet')
    with pytest.raises(
            ValueError,
            match=r"unknown key in model.dsd_taps: 'prest' \(did you mean 'preset'\?\)"):
        _build(bad)


def test_prediction_is_the_stock_segmentor_and_export_loads_strictly(model):
    cfg = _cfg()
    stock_cfg = copy.deepcopy(cfg.model)
    stock_cfg.type = 'EncoderDecoder'
    stock_cfg.pop('loss_dsd')
    stock = _build(stock_cfg)
    state, dropped = export_state_dict(model)
    assert dropped and all(k.startswith('backbone.dsd_heads.') for k in dropped)
    stock.load_state_dict(state, strict=True)
    model.eval()
    stock.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a = model.predict(x, _samples(torch.zeros(1, 64, 64, dtype=torch.long)))
        b = stock.predict(x, _samples(torch.zeros(1, 64, 64, dtype=torch.long)))
    assert torch.equal(a[0].seg_logits.data, b[0].seg_logits.data)
    assert not list(model.dsd_taps.taps.items())  # hooks inert in eval mode


def test_lean_mode_with_the_padded_ignore_label_matches_straightforward():
    cfg = _cfg().model
    lean_cfg = copy.deepcopy(cfg)
    lean_cfg.loss_dsd = dict(cfg.get('loss_dsd') or {}, strategy='lean')
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    labels = torch.randint(0, C, (2, 64, 64))
    labels[:, :, -6:] = 255  # padding, as mmseg's collate adds
    out = []
    for c, mode in ((cfg, 'straightforward'), (lean_cfg, 'lean')):
        m = _build(c)
        assert m.dsd_taps.mode == mode
        m.train()
        losses = m.loss(x, _samples(labels))
        losses['loss_dsd'].backward()
        out.append((losses, m.backbone.dsd_heads['L1'].conv.weight.grad.clone()))
    (a, ga), (b, gb) = out
    for k in a:
        if k.startswith(('loss', 'dsd_')):
            assert b[k].item() == pytest.approx(a[k].item(), rel=1e-5, abs=1e-7), k
    torch.testing.assert_close(gb, ga, rtol=1e-4, atol=1e-5 * ga.abs().max().item())


def test_a_nan_pixel_is_skipped_with_the_config_guard(monkeypatch):
    from mmengine.optim import build_optim_wrapper

    import plugins.core.mmengine.nonfinite as guard
    from tests.guard_check import check_guard
    messages = []
    monkeypatch.setattr(guard, 'print_log', lambda msg, **kw: messages.append(msg))
    cfg = _cfg()
    net = _build(cfg.model)
    wrapper = build_optim_wrapper(net, cfg.optim_wrapper)  # the config's guard
    torch.manual_seed(1)
    labels = torch.randint(0, C, (2, 64, 64))

    def batch(nan):
        imgs = [torch.rand(3, 64, 64) * 255 for _ in range(2)]
        if nan:
            imgs[1][2, 10, 20] = float('nan')
        return dict(inputs=imgs, data_samples=_samples(labels))

    key = check_guard(net, wrapper, batch(True), batch(False), messages)
    assert key == 'loss_dsd' or key.startswith('dsd_')
