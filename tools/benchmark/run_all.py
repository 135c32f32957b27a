"""All four benchmarks in one go, each in its own process with a time limit.

    python tools/benchmark/run_all.py --device cuda          # GPU presets, < 8 minutes
    python tools/benchmark/run_all.py --device cpu --quick   # small CPU presets (checks it runs)

Each benchmark prints its own table (ratios against a baseline measured in the
same run); this script prints them one after the other with the wall time each
took, and a last line with the total. A benchmark that fails or runs past its
limit is reported and the others still run; the exit status is then 1.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))

#: per device: benchmark -> (arguments, time limit in seconds)
PRESETS: Dict[str, Dict[str, tuple]] = {
    'cuda': {
        'golsd': ([
            '--part', 'all', '--config-pair', 'r50', '--batch', '2', '--size', '800', '--steps',
            '10', '--loss-batches', '4', '16', '64'
        ], 150),
        'slidr': ([
            '--parts', 'pooling', 'loss', 'backbone', '--pool-scenes', '1', '4', '8', '--repeats',
            '7'
        ], 150),
        'dsd': (['--settings', '8:2:96', '--steps', '6'], 90),
        'macil': (['--steps', '10'], 60),
    },
    'cpu': {
        'golsd': (['--part', 'all', '--steps', '5', '--loss-batches', '1', '4', '16'], 600),
        'slidr': ([
            '--parts', 'superpixels', 'pooling', 'loss', '--images', '2', '--pool-scenes', '1', '4',
            '--repeats', '5', '--nce-slots', '900', '3600', '--scans'
        ], 900),
        'dsd': (['--settings', '3:1:64', '--steps', '4'], 600),
        'macil': (['--batch', '32', '--steps', '5'], 300),
    },
    'quick': {
        'golsd': (['--part', 'loss', '--steps', '2', '--warmup', '1', '--loss-batches', '1'], 300),
        'slidr': ([
            '--parts', 'pooling', 'loss', 'backbone', '--pool-scenes', '1', '--repeats', '1',
            '--nce-slots', '300', '--scans', '1'
        ], 300),
        'dsd': (['--settings', '2:1:32', '--steps', '1'], 300),
        'macil': (['--batch', '8', '--length', '50', '--steps', '1', '--videos', '1'], 300),
    },
}


def run(names: Sequence[str],
        preset: Dict[str, tuple],
        device: str,
        extra_env: Optional[dict] = None) -> List[dict]:
    """Run each named benchmark; return ``name, seconds, status`` per run."""
    results = []
    for name in names:
        args, limit = preset[name]
        cmd = [sys.executable, os.path.join(HERE, f'{name}.py'), *args, '--device', device]
        print(f'\n=== {name}: {" ".join(cmd[1:])} (limit {limit} s)', flush=True)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, timeout=limit, env=dict(os.environ, **(extra_env or {})))
            status = 'ok' if proc.returncode == 0 else f'failed (exit {proc.returncode})'
        except subprocess.TimeoutExpired:
            status = f'stopped after {limit} s'
        seconds = time.perf_counter() - t0
        print(f'=== {name}: {status}, {seconds:.0f} s', flush=True)
        results.append(dict(name=name, seconds=seconds, status=status))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cuda', choices=('cuda', 'cpu'))
    parser.add_argument('--quick', action='store_true', help='tiny sizes: checks that each runs')
    parser.add_argument(
        '--only',
        nargs='+',
        choices=('golsd', 'slidr', 'dsd', 'macil'),
        default=['golsd', 'slidr', 'dsd', 'macil'])
    args = parser.parse_args(argv)
    preset = PRESETS['quick' if args.quick else args.device]
    results = run(args.only, preset, args.device)
    total = sum(r['seconds'] for r in results)
    print('\n' + ', '.join(f'{r["name"]} {r["seconds"]:.0f} s ({r["status"]})'
                           for r in results) + f'; total {total:.0f} s')
    return 0 if all(r['status'] == 'ok' for r in results) else 1


if __name__ == '__main__':
    sys.exit(main())
