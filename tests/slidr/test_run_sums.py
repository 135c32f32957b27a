"""The compiled run-sum pooling kernel against per-pixel index_add, and the
pixel pooling's paths (kernel, index_add loop, channels-last view) against
each other."""
import warnings

import pytest
import torch

import plugins.slidr.functional as functional
from plugins.slidr.functional import pool_pixels, superpixel_slots
from plugins.slidr.run_sums import run_sums_available, slot_run_sums

pytestmark = pytest.mark.skipif(not run_sums_available(), reason='numba not installed')


def index_add_sums(feats, local, span):
    out = feats.new_zeros(feats.shape[0], feats.shape[1], span)
    for i in range(feats.shape[0]):
        out[i].index_add_(1, local[i], feats[i])
    return out


def blocky_slots(n, h, w, block, ids, gen):
    """Superpixel-like maps: ``block``-pixel squares of random ids (runs of ``block``)."""
    sp = torch.randint(0, ids, (n, -(-h // block), -(-w // block)), generator=gen)
    return sp.repeat_interleave(block, 1).repeat_interleave(block, 2)[:, :h, :w]


def test_hand_computed_runs():
    # one image, two channels, slots 0 0 1 1 1 0: runs (0: 2), (1: 3), (0: 1)
    feats = torch.tensor([[[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]]])
    local = torch.tensor([[0, 0, 1, 1, 1, 0]])
    out = slot_run_sums(feats, local, 3)
    assert out.tolist() == [[[9.0, 12.0, 0.0], [3.0, 3.0, 0.0]]]


@pytest.mark.parametrize('channels', [1, 4, 6, 9])  # the 4-channel passes and the remainder
@pytest.mark.parametrize('block', [1, 3, 8])  # runs of one pixel to long runs
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_equals_index_add(channels, block, dtype):
    gen = torch.Generator().manual_seed(channels * 10 + block)
    n, h, w, span = 3, 11, 13, 7
    feats = torch.randn(n, channels, h * w, generator=gen, dtype=dtype)
    local = blocky_slots(n, h, w, block, span, gen).reshape(n, h * w)
    got = slot_run_sums(feats, local, span)
    want = index_add_sums(feats, local, span)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)


def test_bad_inputs_are_named():
    feats, local = torch.zeros(1, 2, 4), torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match='float32/float64 CPU'):
        slot_run_sums(feats.half(), local, 2)
    with pytest.raises(ValueError, match='float32/float64 CPU'):
        slot_run_sums(torch.zeros(1, 4, 2).transpose(1, 2), local, 2)  # not contiguous
    with pytest.raises(ValueError, match=r'local must be int64 \(1, 4\)'):
        slot_run_sums(feats, local.int(), 2)
    with pytest.raises(ValueError, match=r'slots must lie in \[0, 2\)'):
        slot_run_sums(feats, torch.tensor([[0, 1, 2, 0]]), 2)
    empty = slot_run_sums(torch.zeros(2, 3, 0), torch.zeros(2, 0, dtype=torch.long), 4)
    assert empty.shape == (2, 3, 4) and not empty.any()


def _pool_and_grad(feats, slots, num, weights):
    feats = feats.detach().requires_grad_()
    q, _ = pool_pixels(feats, slots, num)
    g, = torch.autograd.grad((q * weights).sum(), feats)
    return q, g


def test_pool_pixels_paths_agree(monkeypatch):
    gen = torch.Generator().manual_seed(5)
    feats = torch.randn(4, 6, 20, 24, generator=gen)
    slots, num = superpixel_slots(blocky_slots(4, 20, 24, 4, 30, gen), 30)
    weights = torch.randn(num, 6, generator=gen)
    calls = []
    real = functional.slot_run_sums
    monkeypatch.setattr(functional, 'slot_run_sums', lambda *a: calls.append(1) or real(*a))
    q_kernel, g_kernel = _pool_and_grad(feats, slots, num, weights)
    assert calls, 'the contiguous float32 CPU map should take the compiled kernel'
    monkeypatch.setattr(functional, 'run_sums_available', lambda: False)
    q_loop, g_loop = _pool_and_grad(feats, slots, num, weights)
    assert len(calls) == 1
    torch.testing.assert_close(q_kernel, q_loop, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_kernel, g_loop, rtol=0, atol=0)  # the same gather


def test_channels_last_maps_pool_without_the_kernel_and_agree(monkeypatch):
    gen = torch.Generator().manual_seed(6)
    feats = torch.randn(2, 5, 12, 10, generator=gen, dtype=torch.float64)
    slots, num = superpixel_slots(blocky_slots(2, 12, 10, 3, 9, gen), 9)
    weights = torch.randn(num, 5, generator=gen, dtype=torch.float64)
    q, g = _pool_and_grad(feats, slots, num, weights)
    monkeypatch.setattr(functional, 'slot_run_sums',
                        lambda *a: pytest.fail('a channels-last map needs no run kernel'))
    q_cl, g_cl = _pool_and_grad(
        feats.contiguous(memory_format=torch.channels_last), slots, num, weights)
    torch.testing.assert_close(q_cl, q, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_cl, g, rtol=0, atol=0)


def test_a_failing_kernel_warns_once_and_pooling_falls_back(monkeypatch):
    import plugins.slidr.run_sums as run_sums

    def broken(*args):
        raise RuntimeError('no code for this CPU')

    gen = torch.Generator().manual_seed(7)
    feats = torch.randn(2, 5, 8, 9, generator=gen)
    slots, num = superpixel_slots(blocky_slots(2, 8, 9, 2, 6, gen), 6)
    weights = torch.randn(num, 5, generator=gen)
    want = _pool_and_grad(feats, slots, num, weights)
    monkeypatch.setattr(run_sums, '_KERNEL', broken)
    with pytest.warns(RuntimeWarning, match='pixel-pooling kernel failed .*no code for this CPU'):
        got = _pool_and_grad(feats, slots, num, weights)
    assert not run_sums_available()  # off for the process: no second warning
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        again = _pool_and_grad(feats, slots, num, weights)
    for a, b, c in zip(want, got, again):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(c, b, rtol=0, atol=0)
