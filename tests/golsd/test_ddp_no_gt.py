"""Two gloo processes, one without any ground truth: no hang, same loss keys."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), '_ddp_worker.py')


def test_rank_without_targets_does_not_hang(tmp_path):
    init = str(tmp_path / 'init')
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    procs = [subprocess.Popen([sys.executable, WORKER, str(r), '2', init, str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env) for r in range(2)]
    outputs = []
    for p in procs:
        try:
            outputs.append(p.communicate(timeout=240)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail('DDP step hung: a rank without targets desynchronised the ranks')
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    k0 = json.load(open(tmp_path / 'rank0.json'))
    k1 = json.load(open(tmp_path / 'rank1.json'))
    assert k0 == k1 and len(k0[0]) > 30
