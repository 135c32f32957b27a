"""Golden values and equivalences for the GO-LSD / FDR maths."""
import math
import random
from collections import Counter

import pytest
import torch

from plugins.golsd.functional import (aligned_iou, box_to_distance, cxcywh_to_xyxy, ddf_loss,
                                      decode_corners, distribution_integral, fgl_loss, go_union,
                                      stack_matches, two_bin_targets, weighting_function)


def _w_closed_form(R, c, a=0.5):
    s = (a * c + 1)**(2 / (R - 2))
    w = []
    for n in range(R + 1):
        if n == 0:
            w.append(-2 * a * c)
        elif n == R:
            w.append(2 * a * c)
        elif n < R // 2:
            w.append(1 - s**(R // 2 - n))
        elif n == R // 2:
            w.append(0.0)
        else:
            w.append(s**(n - R // 2) - 1)
    return w


# ----------------------------------------------------------------------- W(n)
@pytest.mark.parametrize('R,c', [(32, 4.0), (32, 8.0), (16, 4.0), (4, 4.0)])
def test_w_matches_closed_form_and_is_antisymmetric(R, c):
    w = weighting_function(R, c)
    assert w.dtype == torch.float64 and w.shape == (R + 1, )
    assert torch.allclose(
        w, torch.tensor(_w_closed_form(R, c), dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.allclose(w, -w.flip(0), atol=1e-12)
    assert w[R // 2] == 0 and torch.all(w[1:] > w[:-1])
    assert w[1] == pytest.approx(-0.5 * c) and w[R - 1] == pytest.approx(0.5 * c)


def test_w_default_values_from_the_spec():
    w = weighting_function(32, 4.0).tolist()
    assert w[:4] == pytest.approx([-4, -2, -1.78813, -1.59122], abs=1e-5)
    assert w[14:19] == pytest.approx([-0.15775, -0.07599, 0, 0.07599, 0.15775], abs=1e-5)
    assert w[-2:] == pytest.approx([2, 4])
    # centre step as a fraction of the anchor size: 0.019 (c=4), 0.0142 (c=8)
    assert w[17] / 4 == pytest.approx(0.019, abs=5e-4)
    assert weighting_function(32, 8.0)[17].item() / 8 == pytest.approx(0.0142, abs=5e-4)


@pytest.mark.parametrize(
    'bad', [dict(reg_max=31),
            dict(reg_max=2),
            dict(reg_max=4.5),
            dict(reg_scale=0),
            dict(up=-1.0)])
def test_w_bad_arguments(bad):
    with pytest.raises(ValueError):
        weighting_function(**bad)


# ----------------------------------------------------------- integral / decode
def test_uniform_distribution_decodes_to_the_anchor():
    w = weighting_function(32, 4.0, dtype=torch.float32)
    anchors = torch.tensor([[0.5, 0.4, 0.2, 0.3], [0.1, 0.9, 0.05, 0.01]])
    d = distribution_integral(torch.zeros(2, 4 * 33), w)
    assert torch.allclose(d, torch.zeros(2, 4), atol=1e-6)
    assert torch.allclose(decode_corners(anchors, d, 4.0), anchors, atol=1e-7)


def test_integral_is_the_probability_weighted_bin_sum():
    w = weighting_function(4, 4.0)  # [-4, -2, 0, 2, 4]
    assert w.tolist() == pytest.approx([-4, -2, 0, 2, 4])
    z = torch.zeros(1, 20, dtype=torch.float64)
    z[0, 5 + 3] = math.log(3.0)  # edge 1 (top): probs [1,1,1,3,1]/7
    d = distribution_integral(z, w)
    assert d[0].tolist() == pytest.approx([0, (-4 - 2 + 0 + 6 + 4) / 7, 0, 0])


def test_decode_golden_and_no_clamping():
    a = torch.tensor([0.5, 0.5, 0.4, 0.2])
    # c=4: x1 = 0.5 - 0.1*(2 + 1) = 0.2; x2 = 0.5 + 0.1*(2 - 1) = 0.6
    out = decode_corners(a, torch.tensor([1.0, 0.0, -1.0, 2.0]), 4.0)
    # y1 = 0.5 - 0.05*2 = 0.4; y2 = 0.5 + 0.05*4 = 0.7
    assert out.tolist() == pytest.approx([0.4, 0.55, 0.4, 0.3])
    neg = decode_corners(a, torch.tensor([-3.0, 0.0, -3.0, 0.0]), 4.0)
    assert neg[2].item() == pytest.approx(0.4 / 4 * (4 - 6))  # negative width kept


def test_inverse_then_decode_is_identity():
    torch.manual_seed(0)
    anchors = torch.rand(50, 4, dtype=torch.float64) * 0.5 + 0.2
    gt = cxcywh_to_xyxy(torch.rand(50, 4, dtype=torch.float64) * 0.5 + 0.2)
    phi = box_to_distance(anchors, gt, 4.0)
    back = cxcywh_to_xyxy(decode_corners(anchors, phi, 4.0))
    assert torch.allclose(back, gt, atol=1e-12)


# ------------------------------------------------------------ two-bin targets
@pytest.mark.parametrize(
    'phi,left,wl,wr',
    [
        (1.0, 2, 0.5, 0.5),  # between W(2)=0 and W(3)=2
        (-3.0, 0, 0.5, 0.5),  # between W(0)=-4 and W(1)=-2
        (3.5, 3, 0.25, 0.75),  # between W(3)=2 and W(4)=4
        (-4.0, 0, 1.0, 0.0),  # exactly W(0): in range
        (2.0, 3, 1.0, 0.0),  # exact interior bin hit
        (0.0, 2, 1.0, 0.0),  # exact centre bin
        (-5.0, 0, 1.0, 0.0),  # below the first bin: all mass on bin 0
        (4.0, 3, 0.0, 1.0),  # at the last bin: all mass on bin R
        (7.0, 3, 0.0, 1.0),  # beyond the last bin
    ])
def test_two_bin_targets_golden(phi, left, wl, wr):
    w = weighting_function(4, 4.0)
    n, a, b = two_bin_targets(torch.tensor([phi], dtype=torch.float64), w)
    assert n.item() == left and a.item() == pytest.approx(wl) and b.item() == pytest.approx(wr)


def test_two_bin_reconstruction_in_range():
    w = weighting_function(32, 4.0)
    phi = torch.linspace(-3.999, 3.999, 1001, dtype=torch.float64)
    n, wl, wr = two_bin_targets(phi, w)
    assert torch.allclose(wl * w[n] + wr * w[n + 1], phi, atol=1e-12)
    assert torch.all((n >= 0) & (n <= 31)) and torch.allclose(wl + wr, torch.ones_like(wl))


# ------------------------------------------------------------------------ IoU
def test_aligned_iou_golden_and_degenerate():
    a = torch.tensor([[0, 0, 2, 2], [0, 0, 0, 0], [0, 0, 1, 1.0]])
    b = torch.tensor([[1, 1, 3, 3], [0, 0, 0, 0], [2, 2, 3, 3.0]])
    iou = aligned_iou(a, b)
    assert iou.tolist() == pytest.approx([1 / 7, 0.0, 0.0])
    neg = cxcywh_to_xyxy(torch.tensor([[0.5, 0.5, -0.2, 0.3]]))
    assert neg[0, 0] == neg[0, 2] == 0.5  # width clamped at 0 before IoU


# ----------------------------------------------------------------- GO union
def _t(*v):
    return torch.tensor(v, dtype=torch.long)


def test_go_union_golden():
    s1 = (_t(0, 0, 1), _t(0, 1, 0), _t(0, 1, 0))
    s2 = (_t(0, 0, 1), _t(0, 2, 0), _t(0, 1, 1))
    s3 = (_t(0, 0, 1), _t(0, 1, 0), _t(1, 1, 1))
    b, q, g = go_union([s1, s2, s3])
    assert list(zip(b.tolist(), q.tolist(), g.tolist())) == [(0, 0, 0), (0, 1, 1), (0, 2, 1),
                                                             (1, 0, 1)]


def test_go_union_ties_go_to_the_smallest_gt_whatever_the_order():
    s1 = (_t(0), _t(3), _t(2))
    s2 = (_t(0), _t(3), _t(0))
    for sets in ([s1, s2], [s2, s1]):
        b, q, g = go_union(sets)
        assert (b.tolist(), q.tolist(), g.tolist()) == ([0], [3], [0])


def _go_union_loop(sets):
    votes = Counter()
    for b, q, g in sets:
        for bi, qi, gi in zip(b.tolist(), q.tolist(), g.tolist()):
            votes[(bi, qi, gi)] += 1
    best = {}
    for (bi, qi, gi), v in sorted(votes.items()):
        cur = best.get((bi, qi))
        if cur is None or v > cur[1]:
            best[(bi, qi)] = (gi, v)
    return sorted((bi, qi, gi) for (bi, qi), (gi, _) in best.items())


def test_go_union_vectorised_equals_loop_on_random_matchings():
    rng = random.Random(0)
    for _ in range(20):
        sets = []
        for _ in range(8):  # L + 2 sets
            per_image = []
            for b in range(3):
                n_gt = rng.randint(0, 4)
                qs = rng.sample(range(10), n_gt)
                per_image.append((torch.tensor(qs, dtype=torch.long),
                                  torch.tensor(rng.sample(range(n_gt), n_gt), dtype=torch.long)))
            sets.append(stack_matches(per_image))
        b, q, g = go_union(sets)
        assert list(zip(b.tolist(), q.tolist(), g.tolist())) == _go_union_loop(sets)


def test_go_union_empty_and_bad():
    b, q, g = go_union([(_t(), _t(), _t())])
    assert b.numel() == q.numel() == g.numel() == 0
    assert go_union([])[0].numel() == 0
    with pytest.raises(ValueError, match='lengths differ'):
        go_union([(_t(0, 1), _t(0), _t(0))])


# ------------------------------------------------------------------------ FGL
def test_fgl_golden():
    # R=4; edge 0 logits [0, ln2, 0, 0, 0] -> p = [1,2,1,1,1]/6, target n=1 (0.25/0.75)
    z = torch.zeros(1, 20, dtype=torch.float64)
    z[0, 1] = math.log(2)
    tl = torch.tensor([[1, 2, 0, 3]])
    wl = torch.tensor([[0.25, 1.0, 0.5, 0.0]], dtype=torch.float64)
    wr = 1 - wl
    u = torch.tensor([0.8], dtype=torch.float64)
    loss = fgl_loss(z, tl, wl, wr, u, avg_factor=2.0)
    edge0 = 0.25 * math.log(3) + 0.75 * math.log(6)
    other = 3 * math.log(5)  # uniform edges: CE = ln 5 for any target mix
    assert loss.item() == pytest.approx(0.8 * (edge0 + other) / 2.0, rel=1e-12)


def test_fgl_gradient_is_iou_times_softmax_minus_target():
    torch.manual_seed(1)
    z = torch.randn(3, 20, dtype=torch.float64, requires_grad=True)
    tl = torch.randint(0, 4, (3, 4))
    wl = torch.rand(3, 4, dtype=torch.float64)
    u = torch.rand(3, dtype=torch.float64)
    fgl_loss(z, tl, wl, 1 - wl, u, avg_factor=3.0).backward()
    target = torch.zeros(3, 4, 5, dtype=torch.float64)
    target.scatter_(-1, tl.unsqueeze(-1), wl.unsqueeze(-1))
    target.scatter_add_(-1, tl.unsqueeze(-1) + 1, (1 - wl).unsqueeze(-1))
    expected = u[:, None, None] * (torch.softmax(z.detach().view(3, 4, 5), -1) - target) / 3
    assert torch.allclose(z.grad.view(3, 4, 5), expected, atol=1e-12)


def test_fgl_empty_and_normaliser_clamp():
    z = torch.randn(0, 20, requires_grad=True)
    out = fgl_loss(
        z,
        torch.zeros(0, 4, dtype=torch.long),
        torch.zeros(0, 4),
        torch.zeros(0, 4),
        torch.zeros(0),
        avg_factor=0)
    assert out.item() == 0 and out.requires_grad
    z1 = torch.zeros(1, 20)
    one = fgl_loss(
        z1,
        torch.zeros(1, 4, dtype=torch.long),
        torch.ones(1, 4),
        torch.zeros(1, 4),
        torch.ones(1),
        avg_factor=0.0)
    assert one.item() == pytest.approx(4 * math.log(5), rel=1e-6)  # N clamped to 1


# ------------------------------------------------------------------------ DDF
def _kl_sum(s, t, T):
    ps = [math.exp(v / T) for v in s]
    pt = [math.exp(v / T) for v in t]
    zs, zt = sum(ps), sum(pt)
    return sum((b / zt) * math.log((b / zt) / (a / zs)) for a, b in zip(ps, pt))


def test_ddf_golden_with_matched_and_unmatched_means():
    T = 5.0
    torch.manual_seed(2)
    s = torch.randn(1, 2, 20, dtype=torch.float64)
    t = torch.randn(1, 2, 20, dtype=torch.float64)
    matched = torch.tensor([[True, False]])
    weights = torch.tensor([[0.5, 0.8]], dtype=torch.float64)
    ell = [[
        weights[0, q].item() * T * T *
        _kl_sum(s[0, q, 5 * k:5 * k + 5].tolist(), t[0, q, 5 * k:5 * k + 5].tolist(), T)
        for k in range(4)
    ] for q in range(2)]
    mu_m, mu_u = sum(ell[0]) / 4, sum(ell[1]) / 4
    out = ddf_loss(s, t, matched, weights, T)
    assert out.item() == pytest.approx((2 * mu_m + 2 * mu_u) / 4, rel=1e-10)
    # DN pass: sqrt weights come from the matching pass, not recomputed
    dn = ddf_loss(s, t, matched, weights, T, counts=(4, 12))
    assert dn.item() == pytest.approx(
        (2 * mu_m + math.sqrt(12) * mu_u) / (2 + math.sqrt(12)), rel=1e-10)


def test_ddf_empty_sets_and_identity():
    s = torch.randn(2, 3, 20, requires_grad=True)
    t = torch.randn(2, 3, 20)
    w = torch.rand(2, 3)
    none_matched = ddf_loss(s, t, torch.zeros(2, 3, dtype=torch.bool), w)
    assert torch.isfinite(none_matched)
    all_matched = ddf_loss(s, t, torch.ones(2, 3, dtype=torch.bool), w)
    assert torch.isfinite(all_matched)
    same = ddf_loss(s, s, torch.ones(2, 3, dtype=torch.bool), w)
    assert same.item() == 0 and same.requires_grad
    empty = ddf_loss(
        torch.zeros(1, 0, 20, requires_grad=True), torch.zeros(1, 0, 20),
        torch.zeros(1, 0, dtype=torch.bool), torch.zeros(1, 0))
    assert empty.item() == 0
    with pytest.raises(ValueError, match='differ in shape'):
        ddf_loss(s, t[:, :2], torch.zeros(2, 3, dtype=torch.bool), w)


def test_residual_gradients_reach_earlier_layers_but_not_through_the_teacher():
    torch.manual_seed(3)
    deltas = [torch.randn(1, 4, 20, requires_grad=True) for _ in range(3)]
    z = [deltas[0], deltas[0] + deltas[1], deltas[0] + deltas[1] + deltas[2]]  # acc
    matched = torch.tensor([[True, False, True, False]])
    w = torch.rand(1, 4)
    ddf_loss(z[0], z[2], matched, w).backward()
    assert deltas[0].grad.abs().sum() > 0
    assert deltas[1].grad is None and deltas[2].grad is None  # teacher is detached
    for d in deltas:
        d.grad = None
    tl = torch.randint(0, 4, (2, 4))
    fgl_loss(z[2][0, :2], tl, torch.full((2, 4), 0.5), torch.full((2, 4), 0.5), torch.ones(2),
             2).backward()
    assert all(d.grad is not None and d.grad.abs().sum() > 0 for d in deltas)
    assert torch.equal(deltas[0].grad, deltas[2].grad)


# ------------------------------------------- vectorised head path vs plain loops
def _fgl_loop(corners, anchors, boxes, go, gts_xyxy, W, c, n_go):
    R = len(W) - 1
    total = 0.0
    for b, q, g in go:
        cx, cy, w, h = anchors[b][q]
        x1, y1, x2, y2 = gts_xyxy[b][g]
        phis = [(cx - x1) / (w / c) - c / 2, (cy - y1) / (h / c) - c / 2,
                (x2 - cx) / (w / c) - c / 2, (y2 - cy) / (h / c) - c / 2]
        bx = boxes[b][q]
        pb = [
            bx[0] - max(bx[2], 0) / 2, bx[1] - max(bx[3], 0) / 2, bx[0] + max(bx[2], 0) / 2,
            bx[1] + max(bx[3], 0) / 2
        ]
        iw = max(0.0, min(pb[2], x2) - max(pb[0], x1))
        ih = max(0.0, min(pb[3], y2) - max(pb[1], y1))
        inter = iw * ih
        union = (pb[2] - pb[0]) * (pb[3] - pb[1]) + (x2 - x1) * (y2 - y1) - inter
        u = inter / max(union, 1e-12)
        for k in range(4):
            z = corners[b][q][k * (R + 1):(k + 1) * (R + 1)]
            m = max(z)
            lse = m + math.log(sum(math.exp(v - m) for v in z))
            phi = phis[k]
            n = sum(1 for v in W if v <= phi) - 1
            if n < 0:
                n, wl, wr = 0, 1.0, 0.0
            elif n >= R:
                n, wl, wr = R - 1, 0.0, 1.0
            else:
                dl, dr = abs(phi - W[n]), abs(W[n + 1] - phi)
                wr = dl / (dl + dr)
                wl = 1 - wr
            total += u * (wl * (lse - z[n]) + wr * (lse - z[n + 1]))
    return total / max(n_go, 1)


def test_fgl_head_path_equals_a_plain_loop():
    torch.manual_seed(5)
    R, c = 8, 4.0
    W = weighting_function(R, c)
    B, Q = 2, 5
    corners = torch.randn(B, Q, 4 * (R + 1), dtype=torch.float64)
    anchors = torch.rand(B, Q, 4, dtype=torch.float64) * 0.4 + 0.2
    boxes = torch.rand(B, Q, 4, dtype=torch.float64) * 0.4 + 0.2
    gts = [cxcywh_to_xyxy(torch.rand(3, 4, dtype=torch.float64) * 0.5 + 0.1) for _ in range(B)]
    go = [(0, 1, 2), (0, 3, 0), (1, 0, 1), (1, 4, 1)]  # one-to-many: gt 1 twice
    b, q, g = (torch.tensor(v) for v in zip(*go))
    gt_rows = torch.stack([gts[bi][gi] for bi, gi in zip(b.tolist(), g.tolist())])
    tl, wl, wr = two_bin_targets(box_to_distance(anchors[b, q], gt_rows, c), W)
    u = aligned_iou(cxcywh_to_xyxy(boxes[b, q]), gt_rows)
    got = fgl_loss(corners[b, q], tl, wl, wr, u, avg_factor=3.0)
    want = _fgl_loop(corners.tolist(), anchors.tolist(), boxes.tolist(), go,
                     [x.tolist() for x in gts], W.tolist(), c, 3.0)
    assert got.item() == pytest.approx(want, rel=1e-9)


def test_ddf_equals_a_plain_loop_with_random_masks():
    torch.manual_seed(6)
    T = 5.0
    for _ in range(5):
        s = torch.randn(2, 6, 20, dtype=torch.float64)
        t = torch.randn(2, 6, 20, dtype=torch.float64)
        matched = torch.rand(2, 6) > 0.6
        w = torch.rand(2, 6, dtype=torch.float64)
        ell_m, ell_u = [], []
        for bi in range(2):
            for qi in range(6):
                for k in range(4):
                    v = w[bi, qi].item() * T * T * _kl_sum(s[bi, qi, 5 * k:5 * k + 5].tolist(),
                                                           t[bi, qi, 5 * k:5 * k + 5].tolist(), T)
                    (ell_m if matched[bi, qi] else ell_u).append(v)
        mu_m = sum(ell_m) / len(ell_m) if ell_m else 0.0
        mu_u = sum(ell_u) / len(ell_u) if ell_u else 0.0
        rm, ru = math.sqrt(len(ell_m)), math.sqrt(len(ell_u))
        want = (rm * mu_m + ru * mu_u) / (rm + ru)
        assert ddf_loss(s, t, matched, w, T).item() == pytest.approx(want, rel=1e-9)
