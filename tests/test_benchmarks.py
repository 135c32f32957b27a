"""The benchmarks run, and each baseline equals the plugin's result before timing.

Every benchmark checks its straightforward baseline against the plugin's code
(values and gradients) and raises if they differ; this runs them at tiny sizes
(no timing is asserted).
"""
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.mark.slow
def test_all_benchmarks_run_and_their_baselines_agree():
    proc = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'benchmark', 'run_all.py'), '--device', 'cpu', '--quick'
    ],
                          capture_output=True,
                          text=True,
                          timeout=900,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ('golsd', 'slidr', 'dsd', 'macil'):
        assert f'=== {name}: ok' in proc.stdout
    assert 'values and gradients checked equal' in proc.stdout
    assert 'losses and gradients checked equal' in proc.stdout
    assert 'floor / channels-last' in proc.stdout  # SLidR pooling: loss + fresh gradient
    assert 'plugin / original' in proc.stdout  # SLidR pooling: the published formulation
    assert 'superpixel NCE alone' in proc.stdout and 'peak MiB' in proc.stdout


def test_slidr_original_formulation_is_the_same_maths():
    sys.path.insert(0, osp.join(ROOT, 'tools', 'benchmark'))
    import slidr as bench
    import torch
    g = torch.Generator().manual_seed(0)
    n, d, h, w, s = 2, 4, 16, 24, 6
    sp = torch.randint(0, s, (n, h, w), generator=g)
    f3 = torch.randn(50, d, generator=g, dtype=torch.float64)
    pix = torch.randn(n, d, h, w, generator=g, dtype=torch.float64)
    pairs = (torch.randint(0, 50, (9, ), generator=g), torch.randint(0, n, (9, ), generator=g),
             torch.randint(0, h, (9, ), generator=g), torch.randint(0, w, (9, ), generator=g))
    values = []
    for step in (bench.original_step, bench.plugin_step):
        a, b = f3.clone().requires_grad_(), pix.clone().requires_grad_()
        loss = step(sp, a, b, *pairs, s)
        values.append((loss, *torch.autograd.grad(loss, (a, b))))
    for x, y in zip(*values):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
    # some slots hold no pairing: both keep the same slots
    assert len(torch.unique(sp[pairs[1], pairs[2], pairs[3]] + pairs[1] * s)) < n * s


def test_fdr_loss_baseline_is_the_same_maths():
    sys.path.insert(0, osp.join(ROOT, 'tools', 'benchmark'))
    import golsd as bench
    import torch
    case = bench.fdr_loss_case(2, queries=40, layers=3, classes=5, reg_max=8, gt_per_img=3)
    a = case['corners'].clone().requires_grad_(True)
    b = case['corners'].clone().requires_grad_(True)
    va, vb = bench.fdr_batched(case, a), bench.fdr_per_layer(case, b)
    torch.testing.assert_close(va, vb, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        torch.autograd.grad(va, a)[0], torch.autograd.grad(vb, b)[0], rtol=1e-4, atol=1e-7)
