"""MACIL-SD maths: hand-computed MIL, semi-bags, contrastive terms, EMA, metrics."""
import math

import numpy as np
import pytest
import torch

from plugins.macil.functional import (contrastive_terms, ema_momentum, ema_update_, lambda_ramp,
                                      mil_bag_scores, mil_loss, semi_bags, sequence_lengths,
                                      topk_mean, topk_sizes)
from plugins.macil.metrics import pr_auc, step_ap


# ------------------------------------------------------------------------ MIL
def test_lengths_and_k_from_zero_padding():
    x = torch.zeros(3, 40, 4)
    x[0, :17] = 1.0
    x[1, :40, 2] = -0.5
    x[2, :1, 0] = 2.0
    lengths = sequence_lengths(x)
    assert lengths.tolist() == [17, 40, 1]
    assert topk_sizes(lengths).tolist() == [2, 3, 1]
    assert topk_sizes(torch.tensor([15, 16, 200, 31, 32])).tolist() == [1, 2, 13, 2, 3]


def test_topk_mean_hand_values_respect_lengths():
    s = torch.tensor([
        [1.0, 5.0, 3.0, 9.0, 100.0],  # T=4 -> k=1: max of first 4 = 9
        [2.0, -1.0, 0.0, 0.0, 0.0]
    ])  # T=1 -> k=1: 2
    assert topk_mean(s, torch.tensor([4, 1])).tolist() == [9.0, 2.0]
    s = torch.arange(20.0)[None]  # T=20 -> k=2: (19+18)/2
    assert topk_mean(s, torch.tensor([20])).item() == 18.5
    s = torch.arange(40.0)[None]  # T=17 -> k=2: (16+15)/2
    assert topk_mean(s, torch.tensor([17])).item() == 15.5


def test_bag_score_is_sigmoid_after_the_mean_and_bce():
    s = torch.tensor([[0.0, 2.0, 4.0] + [0.0] * 13 + [6.0, 8.0]])  # T=18, k=2 -> mean(8,6)=7
    S = mil_bag_scores(s, torch.tensor([18]))
    assert S.item() == pytest.approx(1 / (1 + math.exp(-7.0)))
    loss = mil_loss(torch.tensor([0.8, 0.3]), torch.tensor([1.0, 0.0]))
    assert loss.item() == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2, rel=1e-6)


def test_bad_lengths_and_labels_are_named():
    with pytest.raises(ValueError, match='T_i = 0'):
        topk_mean(torch.zeros(2, 4), torch.tensor([3, 0]))
    with pytest.raises(ValueError, match='must be 0 or 1'):
        mil_loss(torch.tensor([0.5]), torch.tensor([2.0]))
    with pytest.raises(ValueError, match=r'\(B, T, D\)'):
        sequence_lengths(torch.zeros(4, 5))


def test_topk_vectorised_equals_loop():
    torch.manual_seed(0)
    s = torch.randn(6, 50)
    lengths = torch.tensor([50, 1, 16, 17, 33, 48])
    want = [s[i, :t].topk(t // 16 + 1).values.mean() for i, t in enumerate(lengths.tolist())]
    torch.testing.assert_close(topk_mean(s, lengths), torch.stack(want))


# ------------------------------------------------------------------ semi-bags
def _two_samples():
    # sample 0 (violent by prediction), T=3 -> k=1; sample 1 (normal), T=2 -> k=1
    rank_a = torch.tensor([[0.1, 0.9, 0.5], [0.7, 0.2, 0.0]])
    rank_v = torch.tensor([[0.8, 0.3, 0.4], [0.1, 0.6, 0.0]])
    rep_a = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    rep_v = -rep_a
    return rank_a, rank_v, rep_a, rep_v, torch.tensor([0.9, 0.5]), torch.tensor([3, 2])


def test_semi_bags_hand_built():
    banks = semi_bags(*_two_samples())
    rep_a = torch.arange(12.0).view(2, 3, 2)
    # background: bottom-1 by own-modality rank
    torch.testing.assert_close(banks['G_A'], torch.stack([rep_a[0, 0], rep_a[1, 1]]))
    torch.testing.assert_close(banks['G_V'], torch.stack([-rep_a[0, 1], -rep_a[1, 0]]))
    # violent: sample 0 top-1 (a: idx 1, v: idx 0); normal (S = 0.5 is not > 0.5): sample 1
    torch.testing.assert_close(banks['V_A'], rep_a[0, 1:2])
    torch.testing.assert_close(banks['V_V'], -rep_a[0, 0:1])
    torch.testing.assert_close(banks['N_A'], rep_a[1, 0:1])
    torch.testing.assert_close(banks['N_V'], -rep_a[1, 1:2])


def test_violent_rows_are_the_top_k_mean_repeated_k_times():
    torch.manual_seed(0)
    rank = torch.rand(1, 40)
    rep = torch.randn(1, 40, 3)
    banks = semi_bags(rank, rank, rep, rep, torch.tensor([0.7]), torch.tensor([40]))
    idx = rank[0].topk(3).indices
    assert banks['V_A'].shape == (3, 3)
    torch.testing.assert_close(banks['V_A'], rep[0, idx].mean(0).expand(3, 3))
    assert banks['N_A'].shape == (0, 3) and banks['G_A'].shape == (3, 3)


# -------------------------------------------------------------- contrastive
def test_contrastive_terms_hand_value():
    banks = {
        'V_A': torch.tensor([[1.0, 0.0]]),
        'V_V': torch.tensor([[1.0, 0.0]]),
        'G_V': torch.tensor([[0.0, 1.0]]),
        'N_V': torch.tensor([[-1.0, 0.0]]),
        'G_A': torch.tensor([[0.0, 2.0], [3.0, 0.0]]),
        'N_A': torch.tensor([[0.0, -1.0]]),
    }
    banks = {k: v.double() for k, v in banks.items()}
    terms, degenerate = contrastive_terms(banks, temperature=0.1)
    assert not degenerate
    lse = lambda *c: math.log(sum(math.exp(v / 0.1) for v in c))  # noqa: E731
    assert terms['a2v_a2b'].item() == pytest.approx(lse(1, 0) - 10, rel=1e-9)
    assert terms['a2v_a2n'].item() == pytest.approx(lse(1, -1) - 10, rel=1e-9)
    assert terms['v2a_a2b'].item() == pytest.approx(lse(1, 0, 1) - 10, rel=1e-9)
    assert terms['v2a_a2n'].item() == pytest.approx(lse(1, 0) - 10, rel=1e-9)


def test_one_sided_batch_gives_exact_zero_with_graph():
    rank_a, rank_v, rep_a, rep_v, _, lengths = _two_samples()
    rep_a.requires_grad_()
    banks = semi_bags(rank_a, rank_v, rep_a, rep_v, torch.tensor([0.9, 0.8]), lengths)
    terms, degenerate = contrastive_terms(banks)
    assert degenerate and all(t.item() == 0.0 for t in terms.values())
    sum(terms.values()).backward()
    assert rep_a.grad is not None and not rep_a.grad.any()


# --------------------------------------------------------- schedules and EMA
def test_lambda_ramp_and_momentum_table():
    assert [lambda_ramp(e) for e in (0, 1, 10, 15, 30)] == [0.0, 0.1, 1.0, 1.5, 1.5]
    want = {0: 0.91, 1: 0.910089, 10: 0.918594, 25: 0.955, 40: 0.991406, 49: 0.999911}
    for e, m in want.items():
        assert ema_momentum(e) == pytest.approx(m, abs=1e-6)
    assert ema_momentum(50) == 1.0


def test_ema_step_hand_values_skip_and_key_map():
    student = {
        'fc_v.weight': torch.tensor([1.0, 2.0]),
        'fc_a.weight': torch.tensor([5.0]),
        'att_mmil.fc.bias': torch.tensor([0.0])
    }
    teacher = {'fc_v.weight': torch.tensor([3.0, 6.0]), 'fc.bias': torch.tensor([1.0])}
    n = ema_update_(student.items(), teacher, 0.9, skip=('fc_a', ), key_map={'att_mmil.fc': 'fc'})
    assert n == 2
    torch.testing.assert_close(student['fc_v.weight'], torch.tensor([1.2, 2.4]))
    assert student['fc_a.weight'].item() == 5.0
    assert student['att_mmil.fc.bias'].item() == pytest.approx(0.1)
    # bit-exact "scale then add"
    a, b = torch.randn(100), torch.randn(100)
    want = a * 0.91 + b * (1.0 - 0.91)
    got = a.clone()
    ema_update_([('w', got)], {'w': b}, 0.91, skip=())
    assert torch.equal(got, want)
    assert ema_update_([('w', got)], {'w': b}, 1.0) == 0
    with pytest.raises(KeyError, match="no teacher tensor 'x'"):
        ema_update_([('x', a)], {}, 0.9)


# ------------------------------------------------------------------- metrics
def test_metrics_hand_checked():
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    labels = np.array([1, 0, 1, 0])
    # thresholds: P/R = (1, .5), (.5, .5), (2/3, 1), stop at full recall
    assert step_ap(scores, labels) == pytest.approx(0.5 * 1 + 0.5 * (2 / 3))
    area = 0.5 * (1 + 1) * 0.5 + 0 + 0.5 * (0.5 + 2 / 3) * 0.5
    assert pr_auc(scores, labels) == pytest.approx(area)
    # a tie group is one threshold
    tied = np.array([0.5, 0.5, 0.2])
    assert step_ap(tied, np.array([1, 0, 1])) == pytest.approx(0.5 * 0.5 + 0.5 * (2 / 3))


def test_metrics_equal_scikit_learn():
    sklearn = pytest.importorskip('sklearn.metrics')
    rng = np.random.default_rng(0)
    for _ in range(5):
        labels = rng.integers(0, 2, 400)
        scores = np.repeat(rng.random(25), 16)  # 16x repeated snippet scores: ties
        p, r, _ = sklearn.precision_recall_curve(labels, scores)
        assert pr_auc(scores, labels) == pytest.approx(sklearn.auc(r, p), abs=1e-12)
        assert step_ap(scores, labels) == pytest.approx(
            sklearn.average_precision_score(labels, scores), abs=1e-12)


def test_metric_errors():
    with pytest.raises(ValueError, match='at least one positive'):
        pr_auc([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match='3 scores but 2 labels'):
        step_ap([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match='NaN'):
        pr_auc([float('nan'), 0.2], [0, 1])


@pytest.mark.parametrize('split', ['mixed', 'all violent', 'all normal'])
def test_batched_semi_bags_equal_the_sample_loop(split):
    """Same rows in the same order, same gradients, on continuous scores (no ties)."""
    from plugins.macil.functional import semi_bags_loop
    g = torch.Generator().manual_seed(3)
    b, t, d = 7, 50, 6
    lengths = torch.tensor([50, 1, 17, 33, 16, 2, 40])
    ranks = [torch.rand(b, t, generator=g, dtype=torch.float64) for _ in range(2)]
    reps = [
        torch.randn(b, t, d, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2)
    ]
    bag = {
        'mixed': torch.tensor([0.9, 0.2, 0.7, 0.5, 0.51, 0.1, 0.8]),
        'all violent': torch.full((b, ), 0.9),
        'all normal': torch.full((b, ), 0.1)
    }[split]
    fast = semi_bags(ranks[0], ranks[1], reps[0], reps[1], bag, lengths)
    slow = semi_bags_loop(ranks[0], ranks[1], reps[0], reps[1], bag, lengths)
    assert list(fast) == list(slow)
    weights = {}
    for name in slow:
        assert fast[name].shape == slow[name].shape, name
        torch.testing.assert_close(fast[name], slow[name], rtol=1e-12, atol=1e-12)
        weights[name] = torch.randn(slow[name].shape, generator=g, dtype=torch.float64)
    grads = [
        torch.autograd.grad(sum((banks[n] * weights[n]).sum() for n in banks), reps)
        for banks in (fast, slow)
    ]
    for a, c in zip(*grads):
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)
