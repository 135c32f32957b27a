"""SLidR maths: projection, voxels, slots, pooling and loss (hand values, loops, grads)."""
import math

import numpy as np
import pytest
import torch

from plugins.slidr.functional import (kept_slots, pool_pixels, pool_points, superpixel_nce,
                                      superpixel_slots)
from plugins.slidr.geometry import (cylindrical_voxelize, lidar_to_camera, project_points,
                                    project_to_image, quaternion_to_matrix)

IDENTITY = {'rotation': [1, 0, 0, 0], 'translation': [0, 0, 0]}


# ----------------------------------------------------------------- projection
def test_quaternion_matrix_hand_values():
    half = math.sqrt(0.5)
    r = quaternion_to_matrix([half, 0, 0, half])  # +90° about z
    np.testing.assert_allclose(r @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(quaternion_to_matrix([2, 0, 0, 0]), np.eye(3))
    with pytest.raises(ValueError, match='non-zero quaternion'):
        quaternion_to_matrix([0, 0, 0, 0])


def test_chain_order_and_inverse_transforms():
    half = math.sqrt(0.5)
    lidar_calib = {'rotation': [half, 0, 0, half], 'translation': [1, 0, 0]}  # sensor -> ego
    lidar_pose = {'rotation': [1, 0, 0, 0], 'translation': [10, 0, 0]}  # ego -> global
    cam_pose = {'rotation': [1, 0, 0, 0], 'translation': [10, 2, 0]}
    cam_calib = {'rotation': [1, 0, 0, 0], 'translation': [0, 0, 1]}
    p = np.array([[1.0, 0.0, 0.0]])
    # lidar: rotate -> (0,1,0), +(1,0,0) -> (1,1,0); global (11,1,0); cam ego (1,-1,0); cam (1,-1,-1)
    out = lidar_to_camera(p, lidar_calib, lidar_pose, cam_pose, cam_calib, float32=False)
    np.testing.assert_allclose(out, [[1.0, -1.0, -1.0]], atol=1e-12)
    with pytest.raises(KeyError, match='camera ego_pose record lacks'):
        lidar_to_camera(p, lidar_calib, lidar_pose, {'rotation': [1, 0, 0, 0]}, cam_calib)


def test_projection_rules_strict_bounds_depth_and_half_to_even():
    k = [[10.0, 0, 5.0], [0, 10.0, 4.0], [0, 0, 1.0]]  # W=11, H=9
    pts = np.array([
        [0.05, 0.05, 2.0],  # u = 5.25, v = 4.25 -> (4, 5)
        [0.25, 0.05, 2.0],  # u = 6.25 -> col 6
        [0.1, 0.1, 1.0],  # depth 1.0 is not > 1: dropped
        [0.0, 0.0, -3.0],  # behind the camera
        [-0.5, 0.0, 2.0],  # u = 2.5 -> col 2 (half to even), v = 4 -> row 4
        [0.5, 0.0, 2.0],  # u = 7.5 -> col 8 (half to even)
        [1.0, 0.0, 2.0],  # u = 10 = W-1: outside (strict)
        [-1.0, 0.0, 2.0],  # u = 0: outside (strict)
    ])
    idx, row, col = project_to_image(pts, k, 11, 9)
    assert idx.tolist() == [0, 1, 4, 5]
    assert row.tolist() == [4, 4, 4, 4] and col.tolist() == [5, 6, 2, 8]
    with pytest.raises(ValueError, match='3x3'):
        project_to_image(pts, [], 11, 9)
    with pytest.raises(KeyError, match='camera_intrinsic'):
        project_points(pts, IDENTITY, IDENTITY, IDENTITY, IDENTITY, 11, 9)


# -------------------------------------------------------------------- voxels
def test_cylindrical_voxels_first_point_and_inverse():
    xyz = torch.tensor([[1.0, 0.0, 0.0], [1.05, 0.001, 0.05], [0.0, 2.0, 0.0], [1.02, 0.0, 0.01]])
    coords, inverse, first = cylindrical_voxelize(xyz)
    # points 0, 1, 3 share cell (10, 0, 0); point 2 is (20, 90, 0)
    assert coords.tolist() == [[10, 0, 0], [20, 90, 0]]
    assert inverse.tolist() == [0, 0, 1, 0] and first.tolist() == [0, 2]
    c, i, f = cylindrical_voxelize(torch.zeros(0, 3))
    assert c.shape == (0, 3) and i.numel() == 0 and f.numel() == 0


# --------------------------------------------------------------------- slots
def test_slots_never_collide_and_overflow_is_named():
    sp = torch.tensor([[[0, 1], [2, 2]], [[0, 0], [1, 3]]])
    slots, n = superpixel_slots(sp, stride=4)
    assert n == 8 and slots[1].tolist() == [[4, 4], [5, 7]]
    with pytest.raises(ValueError, match='reach 3 in image 1 but only 3 slots'):
        superpixel_slots(sp, stride=3)
    slots, n = superpixel_slots(sp, stride=3, on_overflow='offsets')
    assert n == 3 + 4 and slots[1].tolist() == [[3, 3], [4, 6]]


# ------------------------------------------------------------------- pooling
def test_pooling_hand_values_per_pairing_and_per_pixel():
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0], [4.0, 4.0]])
    # voxel 0 paired twice into slot 1, voxel 1 once into slot 1, voxel 2 into slot 3
    k, m = pool_points(f, torch.tensor([0, 0, 1, 2]), torch.tensor([1, 1, 1, 3]), 4)
    assert m.tolist() == [0, 3, 0, 1]
    torch.testing.assert_close(k[1], torch.tensor([2.0, 2.0]) / (3 + 1e-6))
    assert k[0].abs().sum() == 0 and k[2].abs().sum() == 0
    g = torch.arange(8.0).view(1, 2, 2, 2)  # D=2, 2x2 image
    slots = torch.tensor([[[0, 0], [0, 1]]])
    q, a = pool_pixels(g, slots, 2)
    assert a.tolist() == [3, 1]
    torch.testing.assert_close(q[0], torch.tensor([0 + 1 + 2, 4 + 5 + 6.0]) / (3 + 1e-6))
    torch.testing.assert_close(q[1], torch.tensor([3.0, 7.0]) / (1 + 1e-6))


def _dense_reference(f, rows, pslots, g, slots, num, t):
    """The straightforward formulation: dense one-hot matrices."""
    onehot_p = torch.zeros(num, rows.numel(), dtype=f.dtype)
    onehot_p[pslots, torch.arange(rows.numel())] = 1.0
    k = onehot_p @ f[rows] / (onehot_p.sum(1, keepdim=True) + 1e-6)
    flat = g.permute(0, 2, 3, 1).reshape(-1, g.shape[1])
    onehot_q = torch.zeros(num, flat.shape[0], dtype=f.dtype)
    onehot_q[slots.reshape(-1), torch.arange(flat.shape[0])] = 1.0
    q = onehot_q @ flat / (onehot_q.sum(1, keepdim=True) + 1e-6)
    loss = torch.zeros((), dtype=f.dtype)
    kept = [i for i in range(num) if k[i, 0] != 0]
    for i in kept:
        logits = torch.stack([k[i] @ q[j] / t for j in kept])
        loss = loss - torch.log_softmax(logits, 0)[kept.index(i)]
    return loss / len(kept)


def test_vectorised_equals_dense_loop_with_gradients():
    torch.manual_seed(0)
    n, d, h, w, stride = 3, 5, 6, 7, 4
    sp = torch.randint(0, stride, (n, h, w))
    slots, num = superpixel_slots(sp, stride)
    f = torch.nn.functional.normalize(torch.randn(40, d, dtype=torch.float64), dim=1)
    g = torch.nn.functional.normalize(torch.randn(n, d, h, w, dtype=torch.float64), dim=1)
    f.requires_grad_()
    g.requires_grad_()
    img, r, c = torch.randint(0, n, (60, )), torch.randint(0, h,
                                                           (60, )), torch.randint(0, w, (60, ))
    rows = torch.randint(0, 40, (60, ))
    pslots = slots[img, r, c]
    k, m = pool_points(f, rows, pslots, num)
    q, _ = pool_pixels(g, slots, num)
    loss, kept = superpixel_nce(k, q, 0.07)
    ref = _dense_reference(f, rows, pslots, g, slots, num, 0.07)
    assert kept == int((m > 0).sum())
    assert loss.item() == pytest.approx(ref.item(), rel=1e-12)
    grads = torch.autograd.grad(loss, [f, g])
    refs = torch.autograd.grad(ref, [f, g])
    for a, b in zip(grads, refs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_loss_hand_value_two_slots():
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # slot 2 is empty: dropped
    q = torch.tensor([[1.0, 0.0], [0.5, 0.5], [9.0, 9.0]])
    # slot 1's first channel is 0: the reference rule would drop it; count the pairings
    loss, kept = superpixel_nce(
        k, q, temperature=0.5, counts=torch.tensor([1.0, 2.0, 0.0]), rule='count')
    assert kept == 2
    l0 = -math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(1.0)))
    l1 = -math.log(math.exp(1.0) / (math.exp(0.0) + math.exp(1.0)))
    assert loss.item() == pytest.approx((l0 + l1) / 2, rel=1e-6)


def test_empty_kept_set_is_zero_with_graph_and_warns():
    k = torch.zeros(4, 3, requires_grad=True)
    q = torch.randn(4, 3, requires_grad=True)
    with pytest.warns(RuntimeWarning, match='no superpixel holds a paired point'):
        loss, kept = superpixel_nce(k, q)
    assert kept == 0 and loss.item() == 0.0
    loss.backward()
    assert not q.grad.any() and not k.grad.any()


def test_kept_rules_differ_only_for_a_zero_first_channel():
    k = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    counts = torch.tensor([2.0, 1.0, 0.0])
    assert kept_slots(k).tolist() == [1]
    assert kept_slots(k, counts, 'count').tolist() == [0, 1]
    with pytest.raises(ValueError, match="rule must be"):
        kept_slots(k, counts, 'any')


def test_bad_pairings_are_named():
    f = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r'3D rows outside \[0, 3\)'):
        pool_points(f, torch.tensor([3]), torch.tensor([0]), 2)
    with pytest.raises(ValueError, match=r'slots outside \[0, 2\)'):
        pool_points(f, torch.tensor([0]), torch.tensor([2]), 2)
    with pytest.raises(ValueError, match='does not match pixel features'):
        pool_pixels(torch.zeros(1, 2, 3, 3), torch.zeros(1, 3, 4, dtype=torch.long), 2)


def test_lovasz_softmax_hand_values_and_ignore():
    from plugins.slidr.metrics import lovasz_softmax

    # perfect one-hot predictions: 0; one class, p = 0.5 everywhere: errors all 0.5 -> 0.5
    labels = torch.tensor([0, 1, 1, 2])
    perfect = torch.nn.functional.one_hot(labels, 3).double()
    assert lovasz_softmax(perfect, labels).item() == 0.0
    half = torch.full((2, 2), 0.5, dtype=torch.float64)
    assert lovasz_softmax(half, torch.tensor([1, 1])).item() == pytest.approx(0.5)
    # hard predictions: right on both rows -> 0; wrong on both -> 1 per class
    p = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    assert lovasz_softmax(p, torch.tensor([1, 0])).item() == pytest.approx(0.0)
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # both wrong
    assert lovasz_softmax(p, torch.tensor([1, 0])).item() == pytest.approx(1.0)
    ignored = lovasz_softmax(half.requires_grad_(), torch.tensor([0, 0]), ignore_index=0)
    assert ignored.item() == 0.0
    ignored.backward()


def test_confusion_and_iou_rules():
    from plugins.slidr.metrics import confusion_matrix, iou_from_confusion
    target = torch.tensor([0, 1, 1, 2, 2, 2])
    pred = torch.tensor([2, 1, 2, 2, 2, 1])
    conf = confusion_matrix(pred, target, 4)
    iou, miou = iou_from_confusion(conf, ignore_index=0)
    # class 1: TP 1, FP 1, FN 1 -> 1/3; class 2: TP 2, FP 1 (the gt-0 row is zeroed), FN 1 -> 1/2
    assert iou[1].item() == pytest.approx(1 / 3) and iou[2].item() == pytest.approx(0.5)
    assert iou[3].item() == 1.0  # empty union: the reference's IoU 1
    assert miou == pytest.approx((1 / 3 + 0.5 + 1.0) / 3)


def test_drop_cuboid_reindexes_pairings_and_reverts():
    from plugins.slidr.datasets.augment import drop_cuboid
    xyz = np.array([[0, 0, 0], [10, 10, 10], [0.1, 0.1, 0.1], [5, 5, 5]], np.float64)
    pairs = [np.array([[1, 3, 4], [3, 5, 6], [2, 0, 0]])]

    class Fixed:  # c = 0.19 around point 0: drops points 0 and 2

        def uniform(self, lo, hi):
            return 0.19

        def integers(self, lo, hi):
            return 0

    keep, out = drop_cuboid(xyz, pairs, Fixed(), min_pairs=1)
    assert keep.tolist() == [False, True, False, True]
    assert out[0].tolist() == [[0, 3, 4], [1, 5, 6]]
    keep, out = drop_cuboid(xyz, pairs, Fixed(), min_pairs=3)  # would leave 2 < 3: reverted
    assert keep.all() and out[0] is pairs[0]


def test_pooling_sums_half_precision_features_in_float32():
    from plugins.slidr.functional import pool_pixels, pool_points
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 8, 64, 96, generator=g).bfloat16()
    slots = torch.randint(0, 10, (2, 64, 96), generator=g)
    q, a = pool_pixels(feats, slots, 10)
    ref, _ = pool_pixels(feats.double(), slots, 10)
    assert q.dtype == a.dtype == torch.float32
    assert ((q.double() - ref).abs() / ref.abs().clamp_min(1e-3)).max() < 1e-5
    rows = torch.randint(0, 500, (4000, ), generator=g)
    k, m = pool_points(torch.randn(500, 8, generator=g).half(), rows, rows % 7, 7)
    assert k.dtype == m.dtype == torch.float32 and float(m.sum()) == 4000


def _pool_channels_last(features, slots, num_slots):
    """Straightforward pooling: channels-last rows, one index_add."""
    flat = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
    index = slots.reshape(-1)
    pooled = flat.new_zeros(num_slots, flat.shape[1]).index_add(0, index, flat)
    counts = torch.bincount(index, minlength=num_slots).to(flat.dtype)
    return pooled / (counts[:, None] + 1e-6)


@pytest.mark.parametrize('stride,ids', [(5, 5), (7, 4)])
def test_native_layout_pooling_equals_channels_last(stride, ids):
    gen = torch.Generator().manual_seed(3)
    feats = torch.randn(3, 4, 6, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    sp = torch.randint(0, ids, (3, 6, 5), generator=gen)
    slots, num = superpixel_slots(sp, stride)
    q, _ = pool_pixels(feats, slots, num)
    ref = _pool_channels_last(feats, slots, num)
    torch.testing.assert_close(q, ref, rtol=0, atol=1e-12)
    weights = torch.randn(q.shape, generator=gen, dtype=torch.float64)
    g, = torch.autograd.grad((q * weights).sum(), feats, retain_graph=True)
    g_ref, = torch.autograd.grad((ref * weights).sum(), feats)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-12)
    # repeated backward through a retained graph gives the same gradient
    g_again, = torch.autograd.grad((q * weights).sum(), feats)
    torch.testing.assert_close(g_again, g)


def test_pooling_with_slot_ranges_wider_than_an_image():
    # every image uses slots spread over the whole range: the fallback path
    feats = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    slots = torch.tensor([[[0, 9], [3, 3]], [[1, 8], [8, 0]]])
    q, a = pool_pixels(feats, slots, 10)
    torch.testing.assert_close(q, _pool_channels_last(feats, slots, 10), rtol=0, atol=1e-12)
    assert a.tolist() == [2, 1, 0, 2, 0, 0, 0, 0, 2, 1]


def test_pooling_empty_batch():
    q, a = pool_pixels(torch.zeros(0, 3, 4, 4), torch.zeros(0, 4, 4, dtype=torch.long), 0)
    assert q.shape == (0, 3) and a.shape == (0, )
