"""FGLLoss and DDFLoss: registered modules over the functional layer, built
from config dicts by the heads."""
import math

import pytest
import torch

from plugins.golsd.functional import ddf_loss, fgl_loss, two_bin_targets, weighting_function
from plugins.golsd.losses import DDFLoss, FGLLoss

from .conftest import GOLSD_DEMO, build, samples


def _fgl_case(m=3, reg_max=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    project = weighting_function(reg_max, 4.0, 0.5).float()
    phi = (torch.rand(m, 4, generator=gen) - 0.5) * 3
    targets = two_bin_targets(phi, project)
    corners = torch.randn(m, 4 * (reg_max + 1), generator=gen, requires_grad=True)
    iou = torch.rand(m, generator=gen)
    return corners, targets, iou


def test_fgl_by_hand_one_pair_one_edge_mass():
    """R = 4 bins, logits 0 everywhere: CE = ln 5 for every bin, so the loss of
    one pair is u · 4 edges · (ω_← + ω_→) · ln 5 = 4 u ln 5."""
    corners = torch.zeros(1, 4 * 5)
    targets = (torch.tensor([[1, 0, 2,
                              3]]), torch.tensor([[0.25, 1.0, 0.5,
                                                   0.0]]), torch.tensor([[0.75, 0.0, 0.5, 1.0]]))
    loss = FGLLoss(loss_weight=2.0)(corners, targets, torch.tensor([0.5]))
    assert loss.item() == pytest.approx(2.0 * 0.5 * 4 * math.log(5), rel=1e-6)


@pytest.mark.parametrize('avg', [None, 2.5, 0.2])
def test_fgl_mean_equals_the_functional_loss(avg):
    corners, targets, iou = _fgl_case()
    got = FGLLoss(loss_weight=0.15)(corners, targets, iou, avg_factor=avg)
    want = 0.15 * fgl_loss(corners, *targets, iou, 3 if avg is None else avg)
    assert torch.equal(got, want)


def test_fgl_none_and_sum_are_the_per_pair_terms():
    corners, targets, iou = _fgl_case()
    loss = FGLLoss(loss_weight=0.5)
    per_pair = loss(corners, targets, iou, reduction_override='none')
    assert per_pair.shape == (3, )
    for i in range(3):  # each pair alone, its own mean over one pair
        one = loss(corners[i:i + 1], tuple(t[i:i + 1] for t in targets), iou[i:i + 1])
        assert per_pair[i].item() == pytest.approx(one.item(), rel=1e-6)
    total = loss(corners, targets, iou, reduction_override='sum')
    assert total.item() == pytest.approx(per_pair.sum().item(), rel=1e-6)
    total.backward()
    assert corners.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="avg_factor needs reduction='mean'"):
        loss(corners, targets, iou, avg_factor=2.0, reduction_override='sum')


def test_ddf_by_hand_and_reductions():
    """Teacher = student on every distribution but one: only that one has a KL."""
    gen = torch.Generator().manual_seed(0)
    teacher = torch.randn(1, 2, 4 * 5, generator=gen)
    student = teacher.clone()
    student[0, 1, :5] = 0.0  # query 1, left edge: uniform student
    mask = torch.tensor([[True, False]])
    weight = torch.tensor([[0.9, 0.4]])
    loss = DDFLoss(temperature=2.0, loss_weight=1.0)
    terms = loss(student, teacher, mask, weight, reduction_override='none')
    p_t = (teacher[0, 1, :5] / 2).softmax(-1)
    kl = (p_t * (p_t.log() - math.log(1 / 5))).sum()
    assert terms.shape == (1, 2, 4)
    assert terms[0, 1, 0].item() == pytest.approx(0.4 * 4 * kl.item(), rel=1e-5)
    assert terms.abs().sum().item() == pytest.approx(terms[0, 1, 0].abs().item(), rel=1e-6)
    # decoupled mean: μ_m = 0 over 4, μ_u = ℓ / 4 over 4 -> (2·0 + 2·ℓ/4) / 4
    mean = loss(student, teacher, mask, weight)
    assert mean.item() == pytest.approx(terms[0, 1, 0].item() / 8, rel=1e-5)
    assert torch.equal(mean, ddf_loss(student, teacher, mask, weight, 2.0))
    assert loss(student, teacher, mask, weight, reduction_override='sum').item() == \
        pytest.approx(terms.sum().item(), rel=1e-6)


def test_bad_options_name_the_input():
    with pytest.raises(ValueError, match='temperature'):
        DDFLoss(temperature=0.0)
    with pytest.raises(ValueError, match='reduction'):
        FGLLoss(reduction='avg')


def test_configs_build_the_modules_and_typos_name_the_nearest_key():
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import plugins  # noqa: F401

    register_all_modules()

    def head(golsd_t=5.0, **options):
        cfg = Config.fromfile(GOLSD_DEMO)  # fresh: building edits the dict
        if golsd_t is None:
            cfg.model.golsd.pop('T')
        for key, value in options.items():
            cfg.model.bbox_head[key] = value
        return MODELS.build(cfg.model).bbox_head

    assert Config.fromfile(GOLSD_DEMO).model.bbox_head.loss_fgl.type == 'FGLLoss'
    stock = head()
    assert type(stock.loss_fgl) is FGLLoss and stock.loss_fgl.loss_weight == 0.15
    assert type(stock.loss_ddf) is DDFLoss and stock.loss_ddf.temperature == 5.0
    # the short form without type builds the same modules
    assert head(loss_fgl=dict(loss_weight=0.3)).loss_fgl.loss_weight == 0.3
    with pytest.raises(ValueError, match="'loss_wieght' .did you mean 'loss_weight'"):
        head(loss_fgl=dict(type='FGLLoss', loss_wieght=0.3))
    with pytest.raises(KeyError, match="did you mean .*'FGLLoss'"):
        head(loss_fgl=dict(type='FGLLos'))
    with pytest.raises(ValueError, match='golsd.T = 5.0 and bbox_head.loss_ddf.temperature = 3.0'):
        head(loss_ddf=dict(type='DDFLoss', temperature=3.0))
    assert head(None, loss_ddf=dict(type='DDFLoss', temperature=3.0)).loss_ddf.temperature == 3.0


def test_a_custom_loss_module_is_called_per_layer_and_matches_the_fused_path():
    """A subclass is not fused: the head calls its forward layer by layer, and
    with the stock maths the numbers equal the fused pass."""
    from mmdet.registry import MODELS

    calls = {'fgl': 0, 'ddf': 0}

    class CountingFGL(FGLLoss):

        def forward(self, *args, **kwargs):
            calls['fgl'] += 1
            return super().forward(*args, **kwargs)

    class CountingDDF(DDFLoss):

        def forward(self, *args, **kwargs):
            calls['ddf'] += 1
            return super().forward(*args, **kwargs)

    model = build(GOLSD_DEMO, seed=0)
    head = model.bbox_head
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for b in head.reg_branches[:head.num_fdr_layers]:
            b[-1].weight.normal_(0, 0.05, generator=gen)
    model.train()
    torch.manual_seed(0)
    imgs = torch.randn(2, 3, 96, 96)
    torch.manual_seed(1)
    fused = model.loss(imgs, samples([2, 1], 96))
    MODELS.register_module(module=CountingFGL, force=True)
    MODELS.register_module(module=CountingDDF, force=True)
    head.loss_fgl = CountingFGL(loss_weight=0.15)
    head.loss_ddf = CountingDDF(loss_weight=1.5, temperature=5.0)
    torch.manual_seed(1)
    looped = model.loss(imgs, samples([2, 1], 96))
    layers = head.num_fdr_layers
    assert calls == {'fgl': 2 * layers, 'ddf': 2 * (layers - 1)}  # matching and DN parts
    for key in fused:
        if 'fgl' in key or 'ddf' in key:
            assert looped[key].item() == pytest.approx(fused[key].item(), rel=1e-5, abs=1e-7), key
