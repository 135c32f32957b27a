"""Closed-form logit gradients of the DSD terms equal autograd of the formulas;
the in-place pieces and the offset voxel order of the lean mode."""
import pytest
import torch

from plugins.dsd.functional import dice_ce, kl_pix
from plugins.dsd.grads import (TeacherKL, class_counts, dice_ce_grad_, dice_ce_value_and_grad,
                               softmax_pair)
from plugins.dsd.lean import from_offset_order, to_offset_order


@pytest.mark.parametrize('shape', [(2, 3, 4, 5, 6), (1, 4, 8, 8), (3, 2, 5, 1)])
def test_dice_ce_grad_equals_autograd(shape):
    torch.manual_seed(0)
    z = (3 * torch.randn(*shape, dtype=torch.float64)).requires_grad_()
    y = torch.randint(0, shape[1], (shape[0], 1, *shape[2:]))
    dice, ce = dice_ce(z, y)
    (2.5 * (dice + ce)).backward()
    value, grad = dice_ce_value_and_grad(z.detach(), y, grad_scale=2.5)
    assert value.item() == pytest.approx((dice + ce).item(), rel=1e-12)
    torch.testing.assert_close(grad, z.grad, rtol=1e-10, atol=1e-15)


def test_dice_ce_grad_hand_value_for_uniform_logits():
    # one voxel per class, z = 0: P = 1/2 everywhere; labels (0, 1)
    z = torch.zeros(1, 2, 1, 2, dtype=torch.float64)
    y = torch.tensor([[[[0, 1]]]])
    value, grad = dice_ce_value_and_grad(z, y)
    # Dice: I = 1/2, U = 2 + ε; a = (1+ε)/(2+ε)²/2, k = 2/(2+ε)/2 per class
    eps = 1e-5
    a, k = (1 + eps) / (2 + eps)**2 / 2, 1 / (2 + eps)
    g_p_hit, g_p_miss = a - k, a
    inner = 0.5 * (g_p_hit + g_p_miss)
    want_hit = 0.5 * (g_p_hit - inner) + (0.5 - 1) / 2
    want_miss = 0.5 * (g_p_miss - inner) + 0.5 / 2
    assert grad[0, 0, 0, 0].item() == pytest.approx(want_hit, rel=1e-12)
    assert grad[0, 1, 0, 0].item() == pytest.approx(want_miss, rel=1e-12)
    # value: Dice 1 − (1+ε)/(2+ε) per class, CE log 2
    assert value.item() == pytest.approx(1 - (1 + eps) / (2 + eps) + 0.6931471805599453, rel=1e-12)


def test_dice_ce_grad_accumulates_into_an_existing_buffer():
    torch.manual_seed(2)
    z = torch.randn(2, 3, 40, dtype=torch.float64)
    y = torch.randint(0, 3, (2, 1, 40))
    _, want = dice_ce_value_and_grad(z, y, grad_scale=0.5)
    log_p, prob = softmax_pair(z.clone(), torch.empty_like(z))
    grad = torch.full_like(z, 0.25)
    dice_ce_grad_(prob, log_p, y, class_counts(y, 3, z.dtype), grad, 0.5, accumulate=True)
    torch.testing.assert_close(grad, want + 0.25, rtol=1e-12, atol=1e-15)


def test_softmax_pair_in_place():
    torch.manual_seed(3)
    z = 5 * torch.randn(2, 4, 30, dtype=torch.float64)
    work, spare = z.clone(), torch.empty_like(z)
    log_p, prob = softmax_pair(work, spare)
    assert log_p is spare and prob is work  # no new full-size tensors
    torch.testing.assert_close(prob, torch.softmax(z, 1), rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(log_p, torch.log_softmax(z, 1), rtol=1e-13, atol=1e-13)
    z[0, 1, 0] = float('-inf')
    log_p, prob = softmax_pair(z.clone(), spare, floor=True)
    assert log_p[0, 1, 0] == -1e4 and prob[0, 1, 0] == 0


def test_class_counts_hand_case():
    y = torch.tensor([[[0, 2, 2, 1, 2]], [[1, 1, 1, 1, 0]]])
    assert class_counts(y, 3, torch.float32).tolist() == [[1, 1, 3], [1, 4, 0]]


def _teacher(t, temperature, need_teacher_grad=True):
    flat = (t / temperature).flatten(2).clone()
    acc = torch.empty_like(flat) if need_teacher_grad else None
    return TeacherKL(flat, torch.empty_like(flat), temperature, torch.empty_like(flat), acc)


def _student(kl, s, temperature, grad_scale=1.0, need_grad=True):
    work, spare = (s / temperature).flatten(2).clone(), torch.empty_like(s.flatten(2))
    value, out, free = kl.student(work, spare, grad_scale, need_grad)
    assert {id(out), id(free)} == {id(work), id(spare)}
    return value, out.view(s.shape)


@pytest.mark.parametrize('temperature', [1.0, 3.0, 0.5])
def test_teacher_kl_grads_equal_autograd_with_two_students(temperature):
    torch.manual_seed(1)
    shape = (2, 4, 3, 5)
    t = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    s1 = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    s2 = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    total = 1.5 * kl_pix(s1, t, temperature) + 0.5 * kl_pix(s2, t, temperature)
    total.backward()
    kl = _teacher(t.detach(), temperature)
    v1, g1 = _student(kl, s1.detach(), temperature, 1.5)
    v2, g2 = _student(kl, s2.detach(), temperature, 0.5)
    assert (1.5 * v1 + 0.5 * v2).item() == pytest.approx(total.item(), rel=1e-12)
    # the grads are w.r.t. the raw logits: ∂/∂s already carries the 1/T of s/T
    torch.testing.assert_close(g1, s1.grad, rtol=1e-10, atol=1e-15)
    torch.testing.assert_close(g2, s2.grad, rtol=1e-10, atol=1e-15)
    g_t = kl.finish(None).view(shape)
    torch.testing.assert_close(g_t, t.grad, rtol=1e-10, atol=1e-15)
    # added to an existing teacher gradient (its own Dice-CE, say)
    kl = _teacher(t.detach(), temperature)
    _student(kl, s1.detach(), temperature, 1.5)
    _student(kl, s2.detach(), temperature, 0.5)
    base = torch.ones(shape, dtype=torch.float64).flatten(2)
    torch.testing.assert_close(kl.finish(base).view(shape), t.grad + 1, rtol=1e-10, atol=1e-14)


def test_teacher_kl_with_zero_probability_classes_is_finite():
    t = torch.zeros(1, 3, 2, 2, dtype=torch.float64)
    t[:, 2] = float('-inf')  # p_t = 0 for class 2
    s = torch.randn(1, 3, 2, 2, dtype=torch.float64)
    kl = _teacher(t, 3.0)
    value, grad = _student(kl, s, 3.0)
    g_t = kl.finish(None).view(t.shape)
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    assert torch.isfinite(g_t).all() and (g_t[:, 2] == 0).all()
    assert value.item() == pytest.approx(kl_pix(s, t, 3.0).item(), rel=1e-12)


def test_forward_only_student_skips_gradients():
    t, s = torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 3)
    kl = _teacher(t, 3.0, need_teacher_grad=False)
    value, q = _student(kl, s, 3.0, need_grad=False)
    assert kl.finish(None) is None
    torch.testing.assert_close(q, torch.softmax(s / 3.0, 1))
    assert value.item() == pytest.approx(kl_pix(s, t, 3.0).item(), rel=1e-5)


@pytest.mark.parametrize('size', [(4, 6), (2, 4, 6)])
def test_offset_order_round_trip_and_layout(size):
    x = torch.arange(2 * 3 * int(torch.tensor(size).prod())).view(2, 3, *size)
    y = to_offset_order(x)
    assert y.shape == (2, 3, x[0, 0].numel())
    assert torch.equal(from_offset_order(y, size), x)
    # position d·N' + v' holds voxel 2·v' + d (first axis slowest)
    half = [n // 2 for n in size]
    n_half = int(torch.tensor(half).prod())
    if len(size) == 2:
        i, j, di, dj = 1, 2, 1, 0
        d, v = di * 2 + dj, i * half[1] + j
        assert y[1, 2, d * n_half + v] == x[1, 2, 2 * i + di, 2 * j + dj]
    else:
        i, j, k, di, dj, dk = 0, 1, 2, 1, 1, 0
        d, v = di * 4 + dj * 2 + dk, (i * half[1] + j) * half[2] + k
        assert y[1, 2, d * n_half + v] == x[1, 2, 2 * i + di, 2 * j + dj, 2 * k + dk]


def test_transposed_conv_is_a_matrix_product_in_offset_order():
    torch.manual_seed(4)
    up = torch.nn.ConvTranspose3d(3, 3, 2, 2).double()
    x = torch.randn(2, 3, 2, 3, 4, dtype=torch.float64)
    want = to_offset_order(up(x))
    w = up.weight.reshape(3, -1)  # (C_in, C_out·8)
    got = (torch.einsum('ck,bcn->bkn', w, x.flatten(2)) +
           up.bias.repeat_interleave(8)[None, :, None]).reshape(2, 3, -1)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_lean_loss_under_no_grad_forms_no_gradients(monkeypatch):
    from plugins.dsd import grads
    from plugins.dsd.lean import dsd_loss_lean
    from plugins.dsd.models.heads import DSDHead
    scales = dict(enc1=1, enc2=2, enc3=4, enc4=8, dec4=16, dec3=8, dec2=4, dec1=2)
    heads = {s: DSDHead(3, 2, k, spatial_dims=2) for s, k in scales.items()}
    feats = {s: torch.randn(1, 3, 32 // k, 32 // k) for s, k in scales.items()}
    main, y = torch.randn(1, 2, 32, 32), torch.randint(0, 2, (1, 1, 32, 32))
    with_grad, _ = dsd_loss_lean(main, feats, heads, y)
    calls = []
    monkeypatch.setattr(grads.torch, 'bmm', lambda *a, **k: calls.append(1))  # grads only
    with torch.no_grad():
        value, _ = dsd_loss_lean(main, feats, heads, y)
    assert not calls and torch.allclose(value, with_grad.detach(), rtol=1e-6)
