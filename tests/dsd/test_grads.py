"""Closed-form logit gradients of the DSD terms equal autograd of the formulas."""
import pytest
import torch

from plugins.dsd.functional import dice_ce, kl_pix
from plugins.dsd.grads import TeacherKL, dice_ce_value_and_grad


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
    _, grad = dice_ce_value_and_grad(z, y)
    # Dice: I = 1/2, U = 2 + ε; a = (1+ε)/(2+ε)²/2, k = 2/(2+ε)/2 per class
    eps = 1e-5
    a, k = (1 + eps) / (2 + eps) ** 2 / 2, 1 / (2 + eps)
    g_p_hit, g_p_miss = a - k, a
    inner = 0.5 * (g_p_hit + g_p_miss)
    want_hit = 0.5 * (g_p_hit - inner) + (0.5 - 1) / 2
    want_miss = 0.5 * (g_p_miss - inner) + 0.5 / 2
    assert grad[0, 0, 0, 0].item() == pytest.approx(want_hit, rel=1e-12)
    assert grad[0, 1, 0, 0].item() == pytest.approx(want_miss, rel=1e-12)


@pytest.mark.parametrize('temperature', [1.0, 3.0, 0.5])
def test_teacher_kl_grads_equal_autograd_with_two_students(temperature):
    torch.manual_seed(1)
    shape = (2, 4, 3, 5)
    t = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    s1 = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    s2 = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    total = 1.5 * kl_pix(s1, t, temperature) + 0.5 * kl_pix(s2, t, temperature)
    total.backward()
    kl = TeacherKL(t.detach(), temperature)
    v1, g1 = kl.student(s1.detach(), 1.5)
    v2, g2 = kl.student(s2.detach(), 0.5)
    assert (1.5 * v1 + 0.5 * v2).item() == pytest.approx(total.item(), rel=1e-12)
    torch.testing.assert_close(g1, s1.grad, rtol=1e-10, atol=1e-15)
    torch.testing.assert_close(g2, s2.grad, rtol=1e-10, atol=1e-15)
    torch.testing.assert_close(kl.teacher_grad, t.grad, rtol=1e-10, atol=1e-15)


def test_teacher_kl_with_zero_probability_classes_is_finite():
    t = torch.zeros(1, 3, 2, 2, dtype=torch.float64)
    t[:, 2] = float('-inf')  # p_t = 0 for class 2
    s = torch.randn(1, 3, 2, 2, dtype=torch.float64)
    kl = TeacherKL(t, 3.0)
    value, grad = kl.student(s)
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    assert torch.isfinite(kl.teacher_grad).all() and (kl.teacher_grad[:, 2] == 0).all()
    assert value.item() == pytest.approx(kl_pix(s, t, 3.0).item(), rel=1e-12)


def test_forward_only_student_skips_gradients():
    t, s = torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 3)
    kl = TeacherKL(t, 3.0, need_teacher_grad=False)
    value, grad = kl.student(s, need_grad=False)
    assert grad is None and kl.teacher_grad is None
    assert torch.equal(value, kl_pix(s, t, 3.0))  # same operations, same bits
