"""SLidR's registered loss: the hand case, reductions, weight, configs."""
import math

import pytest
import torch

from plugins.slidr.functional import superpixel_nce
from plugins.slidr.losses import SuperpixelNCELoss

K = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # slot 2 is empty
Q = torch.tensor([[1.0, 0.0], [0.5, 0.5], [9.0, 9.0]])
COUNTS = torch.tensor([1.0, 2.0, 0.0])
L0 = -math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(1.0)))
L1 = -math.log(math.exp(1.0) / (math.exp(0.0) + math.exp(1.0)))


def test_hand_values_for_every_reduction():
    loss, kept = SuperpixelNCELoss(0.5, 'count')(K, Q, COUNTS)
    assert kept == 2 and loss.item() == pytest.approx((L0 + L1) / 2, rel=1e-6)
    none, _ = SuperpixelNCELoss(0.5, 'count', reduction='none')(K, Q, COUNTS)
    assert torch.allclose(none, torch.tensor([L0, L1]), rtol=1e-6)
    total, _ = SuperpixelNCELoss(0.5, 'count', reduction='sum', loss_weight=2.0)(K, Q, COUNTS)
    assert total.item() == pytest.approx(2.0 * (L0 + L1), rel=1e-6)
    avg, _ = SuperpixelNCELoss(0.5, 'count')(K, Q, COUNTS, avg_factor=4.0)
    assert avg.item() == pytest.approx((L0 + L1) / 4.0, rel=1e-5)
    # the first-channel rule (the original's) drops slot 1 here
    first, kept = SuperpixelNCELoss(0.5)(K, Q, COUNTS)
    assert kept == 1 and first.item() == pytest.approx(0.0, abs=1e-7)


def test_mean_is_the_functional_loss_bitwise_with_its_gradients():
    torch.manual_seed(0)
    k = torch.randn(40, 16, requires_grad=True)
    q = torch.randn(40, 16, requires_grad=True)
    a, ka = SuperpixelNCELoss()(k, q)
    b, kb = superpixel_nce(k, q, 0.07)
    assert ka == kb and torch.equal(a, b)
    ga = torch.autograd.grad(a, [k, q])
    gb = torch.autograd.grad(b, [k, q])
    assert all(torch.equal(x, y) for x, y in zip(ga, gb))
    # the per-row path gives the same mean up to rounding
    c, _ = SuperpixelNCELoss()(k, q, avg_factor=float(ka))
    assert c.item() == pytest.approx(a.item(), rel=1e-5)


def test_nothing_kept_is_a_zero_with_a_graph():
    k = torch.zeros(3, 2, requires_grad=True)
    q = torch.randn(3, 2, requires_grad=True)
    with pytest.warns(RuntimeWarning, match='no superpixel holds a paired point'):
        loss, kept = SuperpixelNCELoss(reduction='sum')(k, q)
    assert kept == 0 and loss.item() == 0.0
    loss.backward()
    assert not k.grad.any()


def test_bad_options_are_named():
    with pytest.raises(ValueError, match='kept_rule'):
        SuperpixelNCELoss(kept_rule='any')
    with pytest.raises(ValueError, match='reduction'):
        SuperpixelNCELoss(reduction='avg')
    with pytest.raises(ValueError, match='temperature'):
        SuperpixelNCELoss(temperature=-1.0)
    with pytest.raises(ValueError, match='matching'):
        SuperpixelNCELoss(reduction='none')(K, Q[:2])


def test_configs_build_by_type_and_typos_name_the_nearest_key():
    pytest.importorskip('mmengine')
    import plugins  # noqa: F401
    from plugins.slidr.mmengine import SLidRPretrainer
    tiny = dict(layers=(1, ) * 8, planes=(8, ) * 8, init_dim=8)
    model = SLidRPretrainer(
        student=tiny, dim=8, loss_nce=dict(type='SuperpixelNCELoss', temperature=0.1))
    assert isinstance(model.loss_nce, SuperpixelNCELoss) and model.loss_nce.temperature == 0.1
    assert SLidRPretrainer(student=tiny, dim=8).loss_nce.temperature == 0.07
    with pytest.raises(ValueError, match=r"'kept_rul' \(did you mean 'kept_rule'\?\)"):
        SLidRPretrainer(student=tiny, dim=8, loss_nce=dict(kept_rul='count'))
