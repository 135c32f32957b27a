"""DSD loss and heads: golden values, MONAI equivalence, gradient rules."""
import math

import pytest
import torch

from plugins.dsd.functional import SLOTS, dice_ce, dsd_loss, kl_pix
from plugins.dsd.models.heads import DSDHead


def _zeros(shape=(1, 2, 1, 2), dtype=torch.float64):
    return {s: torch.zeros(shape, dtype=dtype, requires_grad=True) for s in SLOTS}


# --------------------------------------------------------------------- DiceCE
def test_dice_ce_golden_uniform_logits():
    z = torch.zeros(1, 2, 1, 2, dtype=torch.float64)
    y = torch.tensor([[[[0, 1]]]])
    dice, ce = dice_ce(z, y)
    # each class: inter 0.5, sum P 1, sum G 1
    assert dice.item() == pytest.approx(1 - (1 + 1e-5) / (2 + 1e-5), rel=1e-12)
    assert ce.item() == pytest.approx(math.log(2), rel=1e-12)


@pytest.mark.parametrize('shape', [(2, 3, 5, 6), (2, 4, 3, 4, 5)])
def test_dice_ce_equals_monai_dicece(shape):
    from monai.losses import DiceCELoss
    torch.manual_seed(0)
    z = torch.randn(*shape, dtype=torch.float64)
    y = torch.randint(0, shape[1], (shape[0], 1, *shape[2:]))
    dice, ce = dice_ce(z, y)
    ref = DiceCELoss(include_background=True, to_onehot_y=True, softmax=True)(z, y.double())
    assert (dice + ce).item() == pytest.approx(ref.item(), rel=1e-10)


# ------------------------------------------------------------------------- KL
def test_kl_pix_is_a_per_voxel_mean_with_T_squared():
    T = 2.0
    t = torch.zeros(1, 2, 1, 2, dtype=torch.float64)
    t[0, 0, 0, 0] = math.log(3.0) * T  # voxel 0: p_t = (0.75, 0.25); voxel 1: uniform
    s = torch.zeros_like(t)
    want = T * T * (0.75 * math.log(1.5) + 0.25 * math.log(0.5) + 0.0) / 2
    assert kl_pix(s, t, T).item() == pytest.approx(want, rel=1e-12)


# -------------------------------------------------------------------- DSD loss
def test_dsd_loss_golden_total_and_terms():
    T = 3.0
    maps = _zeros()
    with torch.no_grad():
        maps['dec1'][0, 0, 0, 0] = math.log(3.0) * T  # decoder teacher
        maps['enc4'][0, 1, 0, 1] = math.log(3.0) * T  # encoder teacher
    y = torch.tensor([[[[0, 1]]]], dtype=torch.float32)  # float storage, as MONAI
    total, terms = dsd_loss(maps, y, temperature=T)
    ds0 = 1 - (1 + 1e-5) / (2 + 1e-5) + math.log(2)
    kd = T * T * (0.75 * math.log(1.5) + 0.25 * math.log(0.5)) / 2
    assert set(terms) == {f'ds_{s}'
                          for s in ('main', 'dec4', 'dec3', 'dec2', 'dec1')
                          } | {f'kd_{s}'
                               for s in ('dec4', 'dec3', 'dec2', 'enc1', 'enc2', 'enc3')}
    for s in ('main', 'dec4', 'dec3', 'dec2'):
        assert terms[f'ds_{s}'].item() == pytest.approx(ds0, rel=1e-10)
    for s in ('dec4', 'dec3', 'dec2', 'enc1', 'enc2', 'enc3'):
        assert terms[f'kd_{s}'].item() == pytest.approx(kd, rel=1e-10)
    dice1, ce1 = dice_ce(maps['dec1'].detach(), y.long())
    assert total.item() == pytest.approx(4 * ds0 + (dice1 + ce1).item() + 6 * kd, rel=1e-10)
    total2, _ = dsd_loss(maps, y, temperature=T, alpha=0.5)
    assert total2.item() == pytest.approx(total.item() - 3 * kd, rel=1e-10)
    total3, terms3 = dsd_loss(maps, y, temperature=T, encoder_kd=False)
    assert 'kd_enc1' not in terms3 and total3.item() == pytest.approx(total.item() - 3 * kd)


def test_gradient_rules_teachers_not_detached_and_no_encoder_gt():
    torch.manual_seed(1)
    maps = {s: torch.randn(2, 3, 4, 4, requires_grad=True) for s in SLOTS}
    y = torch.randint(0, 3, (2, 1, 4, 4))
    total, _ = dsd_loss(maps, y, temperature=3.0)
    total.backward()
    for s in SLOTS:
        assert maps[s].grad.abs().sum() > 0, s  # enc4 learns through KL only
    # enc4's gradient is exactly the teacher side of the three encoder KL terms
    g_enc4 = maps['enc4'].grad.clone()
    for m in maps.values():
        m.grad = None
    kd = sum(kl_pix(maps[s], maps['enc4'], 3.0) for s in ('enc1', 'enc2', 'enc3'))
    kd.backward()
    assert torch.allclose(maps['enc4'].grad, g_enc4, atol=1e-7)
    # no ground truth reaches the encoder taps: with alpha=0 they get no gradient
    for m in maps.values():
        m.grad = None
    dsd_loss(maps, y, alpha=0.0)[0].backward()
    for s in ('enc1', 'enc2', 'enc3', 'enc4'):
        assert maps[s].grad is None or maps[s].grad.abs().sum() == 0
    # the detach option stops the teacher gradient
    for m in maps.values():
        m.grad = None
    dsd_loss(maps, y, detach_teacher=True)[0].backward()
    assert maps['enc4'].grad is None or maps['enc4'].grad.abs().sum() == 0


def test_gradients_match_float64_autograd_of_the_formula():
    torch.manual_seed(2)
    maps = {s: torch.randn(1, 2, 2, 2, 2, dtype=torch.float64, requires_grad=True) for s in SLOTS}
    y = torch.randint(0, 2, (1, 1, 2, 2, 2))
    assert torch.autograd.gradcheck(
        lambda *ms: dsd_loss(dict(zip(SLOTS, ms)), y, temperature=3.0)[0],
        tuple(maps[s] for s in SLOTS))


def test_bad_inputs_are_named():
    maps = _zeros()
    y = torch.tensor([[[[0, 1]]]])
    with pytest.raises(ValueError, match=r'label values \[2\]'):
        dsd_loss(maps, torch.tensor([[[[0, 2]]]]))
    with pytest.raises(ValueError, match=r'label values \[-1\]'):
        dsd_loss(maps, torch.tensor([[[[-1, 0]]]]))
    with pytest.raises(ValueError, match='shape'):
        dsd_loss(maps, torch.zeros(1, 1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match='non-integer'):
        dsd_loss(maps, torch.tensor([[[[0.5, 1.0]]]]))
    with pytest.raises(KeyError, match='enc4'):
        dsd_loss({k: v for k, v in maps.items() if k != 'enc4'}, y)
    bad = dict(maps, dec2=torch.zeros(1, 2, 1, 1))
    with pytest.raises(ValueError, match='dec2'):
        dsd_loss(bad, y)
    with pytest.raises(ValueError, match='temperature'):
        dsd_loss(maps, y, temperature=0)


def test_half_precision_maps_are_computed_in_float32():
    maps = {s: torch.randn(1, 2, 2, 2).half() for s in SLOTS}
    total, terms = dsd_loss(maps, torch.zeros(1, 1, 2, 2, dtype=torch.long))
    assert total.dtype == torch.float32 and torch.isfinite(total)


# ----------------------------------------------------------------------- heads
@pytest.mark.parametrize('dims,scale', [(3, 1), (3, 2), (3, 8), (2, 16), (2, 1)])
def test_head_shapes_and_layout(dims, scale):
    head = DSDHead(6, 4, scale, dims)
    spatial = (3, ) * dims
    out = head(torch.randn(2, 6, *spatial))
    assert out.shape == (2, 4, *(3 * scale, ) * dims)
    k = 1 if scale == 1 else 2
    assert dict((n, tuple(p.shape)) for n, p in head.named_parameters()) == {
        'conv.weight': (4, 6) + (1, ) * dims,
        'conv.bias': (4, ),
        'up.weight': (4, 4) + (k, ) * dims,
        'up.bias': (4, )
    }


def test_head_reuses_one_transposed_convolution():
    torch.manual_seed(3)
    head = DSDHead(3, 2, 4, 3)
    f = torch.randn(1, 3, 2, 2, 2)
    assert torch.allclose(head(f), head.up(head.up(head.conv(f))))


def _count(heads):
    return sum(p.numel() for h in heads for p in h.parameters())


def test_head_parameter_counts_match_the_measured_reference():
    # DynUNet [32..320], C=8, shared per level: +8,592
    dyn = [DSDHead(f, 8, s) for f, s in ((32, 1), (64, 2), (128, 4), (256, 8), (320, 16))]
    assert _count(dyn) == 8592
    # UNETR fs=32, hid 768, C=8, eight separate heads: +17,344
    unetr = [
        DSDHead(f, 8, s)
        for f, s in ((32, 1), (64, 2), (128, 4), (256, 8), (768, 16), (256, 8), (128, 4), (64, 2))
    ]
    assert _count(unetr) == 17344
    # SwinUNETR fs=36, C=8, shared per level: +6,800
    swin = [DSDHead(f, 8, s) for f, s in ((36, 1), (36, 2), (72, 4), (144, 8), (288, 16))]
    assert _count(swin) == 6800
    # VNet, in=4, C=4, eight separate heads: the reference's +4,904 less its
    # ninth, unused head (152 parameters), which is not built
    vnet = [
        DSDHead(f, 4, s)
        for f, s in ((16, 1), (32, 2), (64, 4), (128, 8), (256, 16), (256, 8), (128, 4), (64, 2))
    ]
    assert _count(vnet) == 4904 - 152


def test_head_bad_arguments():
    with pytest.raises(ValueError, match='power of two'):
        DSDHead(4, 2, 3)
    with pytest.raises(ValueError, match='spatial_dims'):
        DSDHead(4, 2, 2, spatial_dims=1)
