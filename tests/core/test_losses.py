import math

import pytest
import torch

from plugins.core.functional import info_nce, temperature_kl, temperature_kl_last
from plugins.core.losses import InfoNCELoss, TemperatureKLLoss
from plugins.core.reduction import weight_reduce


def _kl_by_hand(s, t, T):
    """Plain-python KL(softmax(t/T) || softmax(s/T)) * T^2 for one position."""
    ps = [math.exp(v / T) for v in s]
    pt = [math.exp(v / T) for v in t]
    zs, zt = sum(ps), sum(pt)
    return T * T * sum((b / zt) * math.log((b / zt) / (a / zs)) for a, b in zip(ps, pt))


# ------------------------------------------------------------- temperature KL
def test_kl_golden_value_T1():
    # p_t = (0.75, 0.25), p_s = (0.5, 0.5): 0.75 ln 1.5 + 0.25 ln 0.5
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0]])
    kl = temperature_kl(s, t, 1.0)
    assert kl.shape == (1, )
    assert kl.item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), rel=1e-6)
    assert kl.item() == pytest.approx(0.1308121, abs=1e-6)


@pytest.mark.parametrize('T', [0.5, 2.0, 5.0])
def test_kl_matches_hand_formula_with_T_squared(T):
    s = [0.3, -1.2, 2.0]
    t = [1.0, 0.5, -0.7]
    kl = temperature_kl(torch.tensor([s]), torch.tensor([t]), T)
    assert kl.item() == pytest.approx(_kl_by_hand(s, t, T), rel=1e-5)


def test_kl_dims_and_class_reduction():
    torch.manual_seed(0)
    s, t = torch.randn(2, 5, 3, 4), torch.randn(2, 5, 3, 4)
    kl = temperature_kl(s, t, 3.0, dim=1)
    assert kl.shape == (2, 3, 4)
    for b, i, j in [(0, 0, 0), (1, 2, 3)]:
        assert kl[b, i, j].item() == pytest.approx(
            _kl_by_hand(s[b, :, i, j].tolist(), t[b, :, i, j].tolist(), 3.0), rel=1e-5)
    last = temperature_kl(s.movedim(1, -1), t.movedim(1, -1), 3.0, dim=-1)
    assert torch.allclose(last, kl, atol=1e-7)
    mean = temperature_kl(s, t, 3.0, dim=1, class_reduction='mean')
    assert torch.allclose(mean * 5, kl, atol=1e-6)


def test_kl_gradient_is_T_times_ps_minus_pt():
    torch.manual_seed(1)
    T = 2.5
    s = torch.randn(4, 6, requires_grad=True)
    t = torch.randn(4, 6)
    temperature_kl(s, t, T).sum().backward()
    expected = T * (torch.softmax(s.detach() / T, 1) - torch.softmax(t / T, 1))
    assert torch.allclose(s.grad, expected, atol=1e-6)


def test_kl_teacher_detach_option():
    s = torch.randn(3, 4, requires_grad=True)
    t = torch.randn(3, 4, requires_grad=True)
    temperature_kl(s, t, 2.0).sum().backward()
    assert t.grad is None
    temperature_kl(s, t, 2.0, detach_teacher=False).sum().backward()
    assert t.grad is not None and t.grad.abs().sum() > 0


def test_kl_identical_is_zero_with_gradient_path_and_masked_teacher_is_finite():
    s = torch.randn(2, 4, requires_grad=True)
    kl = temperature_kl(s, s.detach().clone(), 5.0)
    assert torch.allclose(kl, torch.zeros(2), atol=1e-6)
    kl.sum().backward()
    assert s.grad is not None
    t = torch.tensor([[0.0, -math.inf, 1.0]])
    out = temperature_kl(torch.zeros(1, 3), t, 1.0)
    assert torch.isfinite(out).all()
    p = torch.softmax(t, 1)[0]
    by_hand = sum(p[i] * math.log(p[i] / (1 / 3)) for i in (0, 2))
    assert out.item() == pytest.approx(float(by_hand), rel=1e-6)


def test_kl_half_precision_is_computed_in_float32():
    s = torch.randn(2, 4).half()
    out = temperature_kl(s, torch.randn(2, 4).half(), 2.0)
    assert out.dtype == torch.float32


def test_kl_bad_inputs():
    with pytest.raises(ValueError, match='differ in shape'):
        temperature_kl(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match='temperature'):
        temperature_kl(torch.zeros(2, 3), torch.zeros(2, 3), 0.0)
    with pytest.raises(ValueError, match='temperature'):
        temperature_kl(torch.zeros(2, 3), torch.zeros(2, 3), float('nan'))
    with pytest.raises(ValueError, match='class_reduction'):
        temperature_kl(torch.zeros(2, 3), torch.zeros(2, 3), class_reduction='max')
    with pytest.raises(ValueError, match='dim'):
        temperature_kl(torch.zeros(2, 3), torch.zeros(2, 3), dim=4)


def test_kl_module_contracts():
    torch.manual_seed(2)
    s, t = torch.randn(4, 5), torch.randn(4, 5)
    per_row = temperature_kl(s, t, 2.0)
    loss = TemperatureKLLoss(temperature=2.0, loss_weight=0.5)
    assert loss(s, t).item() == pytest.approx(0.5 * per_row.mean().item(), rel=1e-6)
    assert loss(
        s, t, reduction_override='sum').item() == pytest.approx(
            0.5 * per_row.sum().item(), rel=1e-6)
    assert loss(
        s, t, avg_factor=2.0).item() == pytest.approx(
            0.5 * per_row.sum().item() / 2.0, rel=1e-6)
    assert loss(s, t, weight=torch.zeros(4)).item() == 0.0
    assert loss(s, t, reduction_override='none').shape == (4, )
    with pytest.raises(ValueError, match='avg_factor'):
        loss(s, t, avg_factor=2.0, reduction_override='sum')
    with pytest.raises(ValueError, match='reduction_override'):
        loss(s, t, reduction_override='avg')
    with pytest.raises(ValueError, match='reduction'):
        TemperatureKLLoss(reduction='batchmean')
    with pytest.raises(ValueError, match='does not broadcast'):
        loss(s, t, weight=torch.ones(3))


def test_kl_module_empty_input_gives_zero_not_nan():
    s = torch.randn(0, 7, requires_grad=True)
    out = TemperatureKLLoss(temperature=5.0)(s, torch.randn(0, 7))
    assert out.item() == 0.0
    out.backward()
    assert s.grad.shape == (0, 7)


# --------------------------------------------------------------------- InfoNCE
def test_info_nce_golden_in_batch():
    q = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out = info_nce(q, p, temperature=1.0)
    assert out.item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)
    assert out.item() == pytest.approx(0.3132617, abs=1e-6)


def test_info_nce_golden_shared_negatives():
    q = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[1.0, 0.0]])
    n = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    out = info_nce(q, p, n, temperature=0.5)  # logits (2, 0, -2)
    expected = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-2)))
    assert out.item() == pytest.approx(expected, rel=1e-6)


def _info_nce_loop(q, p, n, tau, normalize):
    out = []
    for i in range(q.shape[0]):
        qi = q[i] / q[i].norm() if normalize else q[i]

        def sim(v):
            v = v / v.norm() if normalize else v
            return float(qi @ v) / tau

        if n is None:
            logits = [sim(p[j]) for j in range(p.shape[0])]
            target = i
        else:
            logits = [sim(p[i])] + [sim(n[j]) for j in range(n.shape[0])]
            target = 0
        m = max(logits)
        lse = m + math.log(sum(math.exp(v - m) for v in logits))
        out.append(lse - logits[target])
    return torch.tensor(out)


@pytest.mark.parametrize('with_negatives', [False, True])
@pytest.mark.parametrize('normalize', [False, True])
def test_info_nce_vectorised_equals_loop(with_negatives, normalize):
    torch.manual_seed(3)
    q, p = torch.randn(6, 5), torch.randn(8 if not with_negatives else 6, 5)
    n = torch.randn(4, 5) if with_negatives else None
    got = info_nce(q, p, n, temperature=0.2, normalize=normalize)
    want = _info_nce_loop(q, p, n, 0.2, normalize)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)


def test_info_nce_gradient_matches_finite_differences():
    torch.manual_seed(4)
    q = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    p = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    n = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: info_nce(a, b, c, 0.3, normalize=True).sum(),
                                    (q, p, n))


def test_info_nce_empty_and_bad_inputs():
    out = info_nce(torch.zeros(0, 4), torch.zeros(0, 4))
    assert out.shape == (0, )
    q = torch.zeros(0, 4, requires_grad=True)
    assert InfoNCELoss()(q, torch.zeros(0, 4)).item() == 0.0
    with pytest.raises(ValueError, match='2-D'):
        info_nce(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match='features'):
        info_nce(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match='fewer'):
        info_nce(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match='one row per'):
        info_nce(torch.zeros(3, 4), torch.zeros(2, 4), torch.zeros(5, 4))
    with pytest.raises(ValueError, match='temperature'):
        InfoNCELoss(temperature=-1)


def test_info_nce_module_weight_and_avg_factor():
    torch.manual_seed(5)
    q, p = torch.randn(4, 3), torch.randn(4, 3)
    rows = info_nce(q, p, temperature=0.1)
    loss = InfoNCELoss(temperature=0.1, loss_weight=2.0)
    w = torch.tensor([1.0, 0.0, 1.0, 0.0])
    assert loss(
        q, p, weight=w, avg_factor=2).item() == pytest.approx(
            2.0 * (rows[0] + rows[2]).item() / 2, rel=1e-5)


def test_weight_reduce_contracts():
    x = torch.tensor([1.0, 2.0, 3.0])
    assert weight_reduce(x).item() == 2.0
    assert weight_reduce(x, reduction='sum').item() == 6.0
    assert weight_reduce(x, avg_factor=4).item() == pytest.approx(1.5)
    assert torch.equal(
        weight_reduce(x, torch.tensor([0.0, 1.0, 0.0]), 'none'), torch.tensor([0.0, 2.0, 0.0]))
    assert weight_reduce(torch.zeros(0)).item() == 0.0


def test_losses_build_from_host_registries():
    from mmdet.registry import MODELS as DET_MODELS
    from mmengine.registry import MODELS

    import plugins  # noqa: F401
    loss = MODELS.build(dict(type='TemperatureKLLoss', temperature=4.0))
    assert isinstance(loss, TemperatureKLLoss) and loss.temperature == 4.0
    assert isinstance(DET_MODELS.build(dict(type='InfoNCELoss')), InfoNCELoss)


def test_fused_last_axis_kl_equals_temperature_kl():
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(4, 6, 9, generator=gen, dtype=torch.float64, requires_grad=True)
    t = torch.randn(1, 6, 9, generator=gen, dtype=torch.float64)
    t[0, 0, :3] = float('-inf')  # teacher bins of probability 0 contribute exactly 0
    fused = temperature_kl_last(s, t, 3.0)
    plain = temperature_kl(s, t.expand_as(s), 3.0, dim=-1)
    torch.testing.assert_close(fused, plain, rtol=0, atol=1e-12)
    g_fused, = torch.autograd.grad(fused.pow(2).sum(), s)
    g_plain, = torch.autograd.grad(plain.pow(2).sum(), s)
    torch.testing.assert_close(g_fused, g_plain, rtol=0, atol=1e-12)


def test_fused_kl_students_prefix_gets_the_gradient_and_the_rest_zero():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    kl = temperature_kl_last(logits, logits[-1:], 2.0, num_students=2)
    assert kl.shape == (2, 5)
    torch.testing.assert_close(
        kl,
        temperature_kl(logits[:2], logits[-1:].expand(2, 5, 7).detach(), 2.0, dim=-1),
        rtol=0,
        atol=1e-12)
    grad, = torch.autograd.grad(kl.sum(), logits)
    assert grad[2].abs().max() == 0
    # hand case: T (softmax(z/T) − p_t) for one student against a uniform teacher
    z = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64, requires_grad=True)
    temperature_kl_last(z, torch.zeros(1, 2, dtype=torch.float64), 1.0).sum().backward()
    torch.testing.assert_close(z.grad, torch.tensor([[0.25 - 0.5, 0.75 - 0.5]],
                                                    dtype=torch.float64))


def test_fused_kl_bad_inputs():
    with pytest.raises(ValueError, match='differ in shape'):
        temperature_kl_last(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match='num_students'):
        temperature_kl_last(torch.zeros(2, 3), torch.zeros(2, 3), num_students=3)
    with pytest.raises(ValueError, match='temperature'):
        temperature_kl_last(torch.zeros(2, 3), torch.zeros(2, 3), 0.0)
