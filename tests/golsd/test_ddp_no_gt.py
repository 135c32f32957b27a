"""Two gloo processes: a rank without any ground truth (no hang, same loss
keys), and ranks with different numbers of denoising groups (the DN FGL
normaliser of the reference)."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), '_ddp_worker.py')


def _run_two_ranks(tmp_path, mode):
    init = str(tmp_path / 'init')
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    procs = [
        subprocess.Popen(
            [sys.executable, WORKER, str(r), '2', init,
             str(tmp_path), mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env) for r in range(2)
    ]
    outputs = []
    for p in procs:
        try:
            outputs.append(p.communicate(timeout=240)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail('DDP step hung: the ranks desynchronised')
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    return [json.load(open(tmp_path / f'rank{r}.json')) for r in range(2)]


def test_rank_without_targets_does_not_hang(tmp_path):
    r0, r1 = _run_two_ranks(tmp_path, 'no_gt')
    assert r0['keys'] == r1['keys'] and len(r0['keys'][0]) > 30


def test_dn_fgl_normaliser_is_mean_gt_times_local_groups(tmp_path):
    """Rank 0 has 1 GT (20 dynamic groups of the demo's 20 DN queries), rank 1
    has 6 (max 3 per image: 6 groups). The reference normalises the DN FGL by
    the rank-averaged #GT (3.5) times the local group count: 70 and 21. The
    average of local DN positives would give (20 + 36) / 2 = 28 on both."""
    r0, r1 = _run_two_ranks(tmp_path, 'groups')
    (d0, ), (d1, ) = r0['dn'], r1['dn']
    assert (d0['num_gt'], d1['num_gt']) == (1, 6)
    assert d0['avg'] == pytest.approx(3.5 * 20)
    assert d1['avg'] == pytest.approx(3.5 * 6)
