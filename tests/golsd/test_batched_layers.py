"""The all-layers FGL / DDF computations equal the per-layer functions."""
import pytest
import torch

from plugins.core.functional import temperature_kl
from plugins.golsd.functional import (aligned_iou, cxcywh_to_xyxy, ddf_loss, ddf_loss_layers,
                                      fdr_layer_losses, fgl_loss, fgl_loss_layers)


def _case(num_layers=4, batch=3, queries=7, reg_max=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    corners = torch.randn(
        num_layers,
        batch,
        queries,
        4 * (reg_max + 1),
        generator=gen,
        dtype=torch.float64,
        requires_grad=True)
    b, q = torch.tensor([0, 0, 1, 2]), torch.tensor([1, 3, 2, 6])
    left = torch.randint(0, reg_max - 1, (4, 4), generator=gen)
    wl = torch.rand(4, 4, generator=gen, dtype=torch.float64)
    iou = torch.rand(num_layers, 4, generator=gen, dtype=torch.float64)
    matched = torch.zeros(batch, queries, dtype=torch.bool)
    matched[b, q] = True
    weights = torch.rand(num_layers - 1, batch, queries, generator=gen, dtype=torch.float64)
    return corners, b, q, left, wl, iou, matched, weights


def test_fgl_layers_equals_the_loop_in_value_and_gradient():
    corners, b, q, left, wl, iou, _, _ = _case()
    batched = fgl_loss_layers(corners[:, b, q], left, wl, 1 - wl, iou, 3.0)
    loop = torch.stack([
        fgl_loss(corners[i][b, q], left, wl, 1 - wl, iou[i], 3.0) for i in range(corners.shape[0])
    ])
    assert batched.shape == (4, )
    torch.testing.assert_close(batched, loop, rtol=0, atol=1e-12)
    g_batched, = torch.autograd.grad(batched.sum(), corners)
    g_loop, = torch.autograd.grad(loop.sum(), corners)
    torch.testing.assert_close(g_batched, g_loop, rtol=0, atol=1e-12)


def test_fgl_layers_hand_case():
    # one layer, one pair, R = 2 (3 bins): uniform logits give CE = log 3 on both bins
    corners = torch.zeros(1, 1, 12)
    out = fgl_loss_layers(corners, torch.zeros(1, 4, dtype=torch.long), torch.full((1, 4), 0.25),
                          torch.full((1, 4), 0.75), torch.full((1, 1), 0.5), 2.0)
    # 4 edges x (0.25 + 0.75) x log 3 x IoU 0.5 / N 2
    assert out.item() == pytest.approx(4 * torch.log(torch.tensor(3.0)).item() * 0.5 / 2)


@pytest.mark.parametrize('counts', [None, (10, 40)])
def test_ddf_layers_equals_the_loop_in_value_and_gradient(counts):
    corners, _, _, _, _, _, matched, weights = _case()
    batched = ddf_loss_layers(corners[:-1], corners[-1], matched, weights, 5.0, counts)
    loop = torch.stack([
        ddf_loss(corners[i], corners[-1], matched, weights[i], 5.0, counts)
        for i in range(corners.shape[0] - 1)
    ])
    assert batched.shape == (3, )
    torch.testing.assert_close(batched, loop, rtol=0, atol=1e-12)
    g_batched, = torch.autograd.grad(batched.sum(), corners)
    g_loop, = torch.autograd.grad(loop.sum(), corners)
    torch.testing.assert_close(g_batched, g_loop, rtol=0, atol=1e-12)
    assert g_batched[-1].abs().max() == 0  # the teacher gets no gradient


@pytest.mark.parametrize('matched_value', [False, True])
def test_ddf_layers_with_one_group_empty(matched_value):
    corners, _, _, _, _, _, _, weights = _case()
    matched = torch.full(corners.shape[1:3], matched_value)
    batched = ddf_loss_layers(corners[:-1], corners[-1], matched, weights)
    loop = torch.stack([ddf_loss(corners[i], corners[-1], matched, weights[i]) for i in range(3)])
    torch.testing.assert_close(batched, loop, rtol=0, atol=1e-12)
    assert torch.isfinite(batched).all()


def test_empty_inputs_give_connected_zeros():
    corners = torch.zeros(3, 0, 36, requires_grad=True)
    fgl = fgl_loss_layers(corners, torch.zeros(0, 4, dtype=torch.long), torch.zeros(0, 4),
                          torch.zeros(0, 4), torch.zeros(3, 0), 1.0)
    assert fgl.shape == (3, ) and (fgl == 0).all() and fgl.requires_grad
    students = torch.zeros(2, 1, 0, 36, requires_grad=True)
    ddf = ddf_loss_layers(students, torch.zeros(1, 0, 36), torch.zeros(1, 0, dtype=torch.bool),
                          torch.zeros(2, 1, 0))
    assert ddf.shape == (2, ) and (ddf == 0).all() and ddf.requires_grad


def test_bad_shapes_name_the_expected_shape():
    corners, b, q, left, wl, iou, matched, weights = _case()
    with pytest.raises(ValueError, match='iou must be'):
        fgl_loss_layers(corners[:, b, q], left, wl, 1 - wl, iou[:2], 1.0)
    with pytest.raises(ValueError, match='corners must be'):
        fgl_loss_layers(corners[:, b, q][:, :3], left, wl, 1 - wl, iou, 1.0)
    with pytest.raises(ValueError, match='students'):
        ddf_loss_layers(corners[:-1, :, :5], corners[-1], matched, weights)
    with pytest.raises(ValueError, match='weights'):
        ddf_loss_layers(corners[:-1], corners[-1], matched, weights[:2])


def test_temperature_kl_broadcasts_a_size_one_teacher():
    torch.manual_seed(0)
    students, teacher = torch.randn(3, 5, 7), torch.randn(1, 5, 7)
    once = temperature_kl(students, teacher, 2.0, dim=-1)
    each = torch.stack([temperature_kl(s, teacher[0], 2.0, dim=-1) for s in students])
    torch.testing.assert_close(once, each)
    with pytest.raises(ValueError, match='differ in shape'):
        temperature_kl(students, torch.randn(1, 5, 6), 2.0, dim=-1)  # bins must agree
    with pytest.raises(ValueError, match='differ in shape'):
        temperature_kl(students, torch.randn(5, 7), 2.0, dim=-1)  # same rank
    with pytest.raises(ValueError, match='differ in shape'):
        temperature_kl(students[:1], torch.randn(3, 5, 7), 2.0, dim=-1)  # no student broadcast


def _stack_case(dtype, matched_rows, layers=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    batch, queries, reg_max = 3, 7, 8
    corners = torch.randn(
        layers, batch, queries, 4 * (reg_max + 1), generator=gen, dtype=dtype, requires_grad=True)
    boxes = torch.rand(layers, batch, queries, 4, generator=gen, dtype=dtype) * 0.5 + 0.2
    conf = torch.rand(batch, queries, generator=gen, dtype=dtype)
    b = torch.tensor([0, 0, 1, 2])[:matched_rows]
    q = torch.tensor([1, 3, 2, 6])[:matched_rows]
    gt = torch.tensor([[0.1, 0.1, 0.5, 0.6]], dtype=dtype).repeat(matched_rows, 1)
    left = torch.randint(0, reg_max - 1, (matched_rows, 4), generator=gen)
    wl = torch.rand(matched_rows, 4, generator=gen, dtype=dtype)
    return corners, boxes, conf, b, q, gt, (left, wl, 1 - wl)


def _per_layer(corners, boxes, conf, b, q, gt, targets, avg, counts=None):
    matched = torch.zeros(conf.shape, dtype=torch.bool)
    matched[b, q] = True
    fgl, ddf = [], []
    for i in range(corners.shape[0]):
        u = aligned_iou(cxcywh_to_xyxy(boxes[i][b, q].float()), gt.float())
        fgl.append(fgl_loss(corners[i][b, q], *targets, u, avg) if len(b) else corners[i].sum() * 0)
        if i < corners.shape[0] - 1:
            w = conf.clone()
            w[b, q] = u.to(conf.dtype)
            ddf.append(ddf_loss(corners[i], corners[-1], matched, w, 5.0, counts))
    return torch.stack(fgl), (torch.stack(ddf) if ddf else None)


@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-12), (torch.float32, 2e-6)])
@pytest.mark.parametrize('matched_rows', [4, 0])
@pytest.mark.parametrize('counts', [None, (12, 80)])
def test_fused_stack_equals_the_per_layer_functions(dtype, tol, matched_rows, counts):
    corners, boxes, conf, b, q, gt, targets = _stack_case(dtype, matched_rows)
    fgl, ddf = fdr_layer_losses(corners, boxes, conf, b, q, gt, targets, 3.0, counts, 5.0)
    fgl_ref, ddf_ref = _per_layer(corners, boxes, conf, b, q, gt, targets, 3.0, counts)
    assert fgl.shape == (4, ) and ddf.shape == (3, )
    torch.testing.assert_close(fgl, fgl_ref, rtol=0, atol=tol)
    torch.testing.assert_close(ddf, ddf_ref, rtol=0, atol=tol)
    # arbitrary weights per layer and term, as the head's loss weights
    wf, wd = torch.arange(1.0, 5.0, dtype=dtype), torch.arange(2.0, 5.0, dtype=dtype)
    grad, = torch.autograd.grad((fgl * wf).sum() + (ddf * wd).sum(), corners)
    grad_ref, = torch.autograd.grad((fgl_ref * wf).sum() + (ddf_ref * wd).sum(), corners)
    torch.testing.assert_close(grad, grad_ref, rtol=0, atol=tol)


def test_fused_stack_with_one_term_unused_and_repeated_backward():
    corners, boxes, conf, b, q, gt, targets = _stack_case(torch.float64, 4)
    fgl, ddf = fdr_layer_losses(corners, boxes, conf, b, q, gt, targets, 3.0, None, 5.0)
    fgl_ref, ddf_ref = _per_layer(corners, boxes, conf, b, q, gt, targets, 3.0)
    only_fgl, = torch.autograd.grad(fgl.sum(), corners, retain_graph=True)
    torch.testing.assert_close(only_fgl, torch.autograd.grad(fgl_ref.sum(), corners)[0])
    only_ddf, = torch.autograd.grad(ddf.sum(), corners, retain_graph=True)
    torch.testing.assert_close(only_ddf, torch.autograd.grad(ddf_ref.sum(), corners)[0])
    assert only_ddf[-1].abs().max() == 0  # the teacher layer gets no DDF gradient
    # a retained graph gives the same gradient again: nothing saved was changed in place
    (fgl.sum() + ddf.sum()).backward(retain_graph=True)
    first = corners.grad.clone()
    (fgl.sum() + ddf.sum()).backward()
    torch.testing.assert_close(corners.grad, 2 * first)


def test_one_layer_has_fgl_and_no_ddf():
    corners, boxes, conf, b, q, gt, targets = _stack_case(torch.float64, 4, layers=1)
    fgl, ddf = fdr_layer_losses(corners, boxes, conf, b, q, gt, targets, 3.0, None, 5.0)
    assert fgl.shape == (1, ) and ddf.shape == (0, )
    torch.testing.assert_close(fgl, _per_layer(corners, boxes, conf, b, q, gt, targets, 3.0)[0])


def test_half_precision_stack_is_computed_in_float32():
    corners, boxes, conf, b, q, gt, targets = _stack_case(torch.float32, 4)
    half = corners.detach().bfloat16().requires_grad_(True)
    fgl, ddf = fdr_layer_losses(half, boxes, conf, b, q, gt, targets, 3.0, None, 5.0)
    ref = fdr_layer_losses(half.float(), boxes, conf, b, q, gt, targets, 3.0, None, 5.0)
    assert fgl.dtype == ddf.dtype == torch.float32
    torch.testing.assert_close(fgl, ref[0])
    torch.testing.assert_close(ddf, ref[1])
