"""MACIL-SD's registered losses: values by hand, reductions, weights, configs."""
import math

import pytest
import torch

from plugins.macil.functional import semi_bag_contrastive
from plugins.macil.losses import SemiBagContrastiveLoss, TopKMILLoss


def _bce(p, y):
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_topk_mil_by_hand_and_reductions():
    # T=4 -> k=1: the bag score is sigmoid of the largest valid logit
    logits = torch.tensor([[0.0, 2.0, -1.0, 0.5], [1.0, -3.0, 9.0, 9.0]])
    lengths = torch.tensor([4, 2])  # video 1: only the first two count
    labels = torch.tensor([1.0, 0.0])
    s0, s1 = 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(-1.0))
    per = torch.tensor([_bce(s0, 1.0), _bce(s1, 0.0)])
    loss, bag = TopKMILLoss()(logits, labels, lengths)
    assert torch.allclose(bag, torch.tensor([s0, s1]))
    assert loss.item() == pytest.approx(per.mean().item(), rel=1e-6)
    none, _ = TopKMILLoss(reduction='none')(logits, labels, lengths)
    assert torch.allclose(none, per.float(), rtol=1e-6)
    total, _ = TopKMILLoss(reduction='sum', loss_weight=3.0)(logits, labels, lengths)
    assert total.item() == pytest.approx(3.0 * per.sum().item(), rel=1e-6)
    avg, _ = TopKMILLoss()(logits, labels, lengths, avg_factor=4.0)
    assert avg.item() == pytest.approx(per.sum().item() / 4.0, rel=1e-5)
    weighted, _ = TopKMILLoss()(logits, labels, lengths, weight=torch.tensor([0.0, 1.0]))
    assert weighted.item() == pytest.approx(per[1].item() / 2, rel=1e-6)


def test_contrastive_loss_weight_scales_every_term():
    torch.manual_seed(0)
    b, t, d = 4, 12, 8
    out = dict(
        prob_a=torch.rand(b, t),
        prob_v=torch.rand(b, t),
        feat_a=torch.randn(b, t, d),
        feat_v=torch.randn(b, t, d))
    bag = torch.tensor([0.9, 0.2, 0.7, 0.1])
    lengths = torch.tensor([12, 10, 12, 8])
    ref, degenerate = semi_bag_contrastive(out, bag, lengths, 0.1, 0.5, True)
    got, deg2 = SemiBagContrastiveLoss(loss_weight=0.5)(out, bag, lengths)
    assert degenerate is deg2 is False and set(got) == set(ref)
    for k in ref:
        assert torch.allclose(got[k], 0.5 * ref[k])


def test_bad_options_are_named():
    with pytest.raises(ValueError, match='reduction'):
        TopKMILLoss(reduction='avg')
    with pytest.raises(ValueError, match='temperature'):
        SemiBagContrastiveLoss(temperature=0.0)
    with pytest.raises(ValueError, match='bag_threshold'):
        SemiBagContrastiveLoss(bag_threshold=1.5)


def test_configs_build_by_type_and_typos_name_the_nearest_key():
    pytest.importorskip('mmengine')
    import plugins  # noqa: F401
    from plugins.macil.mmengine import MACILSD
    model = MACILSD(
        loss_mil=dict(type='TopKMILLoss', loss_weight=2.0),
        loss_contrastive=dict(temperature=0.2, loss_weight=0.5))
    assert isinstance(model.loss_mil, TopKMILLoss) and model.loss_mil.loss_weight == 2.0
    assert isinstance(model.loss_contrastive, SemiBagContrastiveLoss)
    assert model.loss_contrastive.temperature == 0.2
    with pytest.raises(ValueError, match=r"'loss_wieght' \(did you mean 'loss_weight'\?\)"):
        MACILSD(loss_mil=dict(type='TopKMILLoss', loss_wieght=2.0))
    with pytest.raises(ValueError, match=r"'temprature' \(did you mean 'temperature'\?\)"):
        MACILSD(loss_contrastive=dict(temprature=0.2))
    with pytest.raises(KeyError, match='TopKMILLoss'):
        MACILSD(loss_mil=dict(type='TopKMILLos'))
