"""The row-block in-batch InfoNCE against the materialised logits + cross-entropy."""
import math

import pytest
import torch
import torch.nn.functional as F

import plugins.core.in_batch_nce as nce
from plugins.core.functional import info_nce
from plugins.core.in_batch_nce import in_batch_nce_rows


def plain_rows(q, p, t):
    """Materialised ``(N, M)`` logits and one cross-entropy per row."""
    return F.cross_entropy(q @ p.t() / t, torch.arange(q.shape[0]), reduction='none')


def pair(n, m, d=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g,
                        dtype=dtype).requires_grad_(), torch.randn(m, d, generator=g,
                                                                   dtype=dtype).requires_grad_())


@pytest.mark.parametrize('budget', [1, 7, 24, 1 << 20])  # 1 row a block, uneven blocks, one block
@pytest.mark.parametrize('n,m', [(6, 6), (5, 8)])
def test_blocks_equal_the_materialised_loss_and_gradients(monkeypatch, budget, n, m):
    monkeypatch.setattr(nce, 'CPU_BLOCK_ELEMENTS', budget)
    q, p = pair(n, m)
    g = torch.linspace(0.5, 2.0, n, dtype=torch.float64)  # distinct weights per row
    got = in_batch_nce_rows(q, p, 0.3)
    want = plain_rows(q, p, 0.3)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    got_grads = torch.autograd.grad((got * g).sum(), (q, p))
    want_grads = torch.autograd.grad((want * g).sum(), (q, p))
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_hand_computed_rows():
    # q = (1, 0); p rows (1, 0), (0, 1): logits (1, 0) at τ = 1
    q = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out = in_batch_nce_rows(q, p, 1.0)
    assert out.item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)
    # second row of a two-row batch: logits (0, 2)/0.5 → (0, 4), target 1
    q2 = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    out2 = in_batch_nce_rows(q2, p.double(), 0.5)
    assert out2[1].item() == pytest.approx(math.log(1 + math.exp(-4)), rel=1e-12)


def test_gradcheck_over_several_blocks(monkeypatch):
    monkeypatch.setattr(nce, 'CPU_BLOCK_ELEMENTS', 10)  # 2 rows a block at M = 5
    q, p = pair(4, 5, d=3, seed=1)
    assert torch.autograd.gradcheck(lambda a, b: in_batch_nce_rows(a, b, 0.4), (q, p))


def test_gradient_for_one_input_only():
    q, p = pair(4, 4, seed=2)
    p_const = p.detach()
    (gq, ) = torch.autograd.grad(in_batch_nce_rows(q, p_const, 0.2).sum(), (q, ))
    (want, ) = torch.autograd.grad(plain_rows(q, p_const, 0.2).sum(), (q, ))
    torch.testing.assert_close(gq, want)
    q_const = q.detach()
    (gp, ) = torch.autograd.grad(in_batch_nce_rows(q_const, p, 0.2).sum(), (p, ))
    (want, ) = torch.autograd.grad(plain_rows(q_const, p, 0.2).sum(), (p, ))
    torch.testing.assert_close(gp, want)


def test_large_logits_stay_finite():
    q, p = pair(5, 5, seed=3, dtype=torch.float32)
    out = in_batch_nce_rows(q.detach() * 50, p.detach() * 50, 0.01)  # logits ~ 1e5
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, plain_rows(q.detach() * 50, p.detach() * 50, 0.01))


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_inputs_are_computed_in_float32(dtype):
    q, p = pair(6, 7, seed=4, dtype=dtype)
    out = in_batch_nce_rows(q, p, 0.5)
    assert out.dtype == torch.float32
    want = plain_rows(q.detach().float(), p.detach().float(), 0.5)
    torch.testing.assert_close(out, want, rtol=1e-6, atol=1e-6)
    gq, gp = torch.autograd.grad(out.sum(), (q, p))
    assert gq.dtype == dtype and gp.dtype == dtype


def test_autocast_does_not_change_the_result():
    q, p = pair(6, 6, seed=5, dtype=torch.float32)
    plain = in_batch_nce_rows(q, p, 0.1)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        under = in_batch_nce_rows(q, p, 0.1)
    assert under.dtype == torch.float32
    torch.testing.assert_close(under, plain, rtol=0, atol=0)


def test_empty_query_gives_empty_rows_and_zero_gradients():
    q, p = pair(0, 3, seed=6)
    out = in_batch_nce_rows(q, p, 0.1)
    assert out.shape == (0, )
    gq, gp = torch.autograd.grad(out.sum(), (q, p))
    assert gq.shape == (0, 5)
    assert torch.equal(gp, torch.zeros_like(p))


def test_double_backward_is_refused():
    q, p = pair(3, 3, seed=7)
    (gq, ) = torch.autograd.grad(in_batch_nce_rows(q, p, 0.2).sum(), (q, ), create_graph=True)
    # the gradient is not silently treated as a function of the saved inputs
    assert not gq.requires_grad
    with pytest.raises(RuntimeError, match='does not require grad'):
        gq.sum().backward()


def test_block_rows_fit_the_budget():
    cpu = torch.device('cpu')
    rows = nce._block_rows(7200, 7200, cpu)
    assert rows * 7200 <= nce.CPU_BLOCK_ELEMENTS < (rows + 1) * 7200
    assert nce._block_rows(900, 900, cpu) == 900  # small batches: one block
    assert nce._block_rows(3, 10**8, cpu) == 1  # never zero rows
    assert nce._block_rows(7200, 7200, torch.device('cuda')) == 2330


def test_info_nce_in_batch_reductions_and_bad_reduction():
    q, p = pair(4, 6, seed=8)
    rows = plain_rows(q, p, 0.2)
    torch.testing.assert_close(info_nce(q, p, temperature=0.2, reduction='mean'), rows.mean())
    torch.testing.assert_close(info_nce(q, p, temperature=0.2, reduction='sum'), rows.sum())
    with pytest.raises(ValueError, match="reduction must be 'none', 'mean' or 'sum', got 'avg'"):
        info_nce(q, p, temperature=0.2, reduction='avg')


def test_meta_tensors_give_shapes_without_data():
    q, p = torch.zeros(4, 3, device='meta'), torch.zeros(6, 3, device='meta')
    out = in_batch_nce_rows(q, p, 0.1)
    assert out.shape == (4, ) and out.device.type == 'meta'


@pytest.mark.parametrize('budget', [7, 1 << 20])  # recomputed blocks, and one kept block
def test_retained_graph_gives_the_same_gradient_twice(monkeypatch, budget):
    monkeypatch.setattr(nce, 'CPU_BLOCK_ELEMENTS', budget)
    q, p = pair(5, 6, seed=9)
    loss = in_batch_nce_rows(q, p, 0.25).sum()
    first = torch.autograd.grad(loss, (q, p), retain_graph=True)
    second = torch.autograd.grad(loss, (q, p))
    want = torch.autograd.grad(plain_rows(q, p, 0.25).sum(), (q, p))
    for a, b, c in zip(first, second, want):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)
