"""Write the embedded demo datasets in their real on-disk formats.

    python tools/data/make_demo_data.py coco [--out data/demo/coco] [--seed 0]

Every dataset is a deterministic function of the seed; ``all`` writes each
format this version knows.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from plugins.testing import demo_makers

#: format -> ``make_demo(out, seed, small)``, one module each in ``plugins/testing/``
MAKERS = demo_makers()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('format', choices=sorted(MAKERS) + ['all'])
    parser.add_argument('--out', help='output folder (default data/demo/<format>)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--small', action='store_true', help='a few samples only')
    args = parser.parse_args(argv)
    formats = sorted(MAKERS) if args.format == 'all' else [args.format]
    if args.out and len(formats) > 1:
        parser.error('--out needs a single format')
    for fmt in formats:
        out = args.out or osp.join('data', 'demo', fmt)
        t0 = time.time()
        result = MAKERS[fmt](out, args.seed, args.small)
        print(f'[data] {fmt}: wrote {out} in {time.time() - t0:.1f} s -> {result}')


if __name__ == '__main__':
    main()
