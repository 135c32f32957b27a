"""Compute SLIC superpixels for camera images once, cached as uint8 PNGs.

    python tools/data/make_superpixels.py --images data/cams --out superpixels/slic_150
    python tools/data/make_superpixels.py --list tokens.txt --out ... --method reference

``--images`` takes every ``.jpg``/``.png`` below a folder and names each map after
the image's stem; ``--list`` reads lines ``<camera sample_data token> <image path>``
(the nuScenes convention: maps are keyed by the camera sample_data token). Existing
maps are kept (``--overwrite`` recomputes). ``--method fast`` (default) runs SLIC,
compiled with numba, on a 2x smaller image and up-samples the labels (about 10x
faster, boundary recall ~0.9 within 2 px of the reference); ``--method reference`` is scikit-image at full
resolution (``n_segments=150, compactness=6, sigma=3, start_label=0``).
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
import time
from multiprocessing import Pool
from typing import List, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from tqdm import tqdm


def _jobs(args) -> List[Tuple[str, str]]:
    jobs = []
    if args.images:
        for root, _, files in os.walk(args.images):
            for name in sorted(files):
                if name.lower().endswith(('.jpg', '.jpeg', '.png')):
                    jobs.append((osp.splitext(name)[0], osp.join(root, name)))
    if args.list:
        with open(args.list) as f:
            for n, line in enumerate(f, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2:
                    raise SystemExit(f'{args.list}:{n}: expected "<token> <image path>", got '
                                     f'{line.strip()!r}')
                jobs.append((parts[0], parts[1]))
    if not jobs:
        raise SystemExit('no images found: give --images DIR or --list FILE')
    return sorted(jobs)


def _work(job):
    token, path, out, method, segments, factor = job
    import cv2
    import numpy as np

    from plugins.slidr.datasets.superpixels import save_labels, slic_fast, slic_reference
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        return token, None, f'cannot read {path}'
    rgb = np.ascontiguousarray(image[..., ::-1])
    if method == 'reference':
        labels = slic_reference(rgb, n_segments=segments)
    else:
        labels = slic_fast(rgb, n_segments=segments, factor=factor)
    save_labels(labels, osp.join(out, f'{token}.png'))
    return token, int(labels.max()) + 1, None


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--images', help='folder of camera images')
    parser.add_argument('--list', help='file of "<token> <image path>" lines')
    parser.add_argument('--out', required=True, help='output folder of <token>.png maps')
    parser.add_argument('--method', choices=['fast', 'reference'], default='fast')
    parser.add_argument('--segments', type=int, default=150)
    parser.add_argument('--factor', type=int, default=2, help='down-scaling of --method fast')
    parser.add_argument(
        '--workers',
        type=int,
        default=os.cpu_count() or 1,
        help='processes, one image each at a time (1: in this process)')
    parser.add_argument('--overwrite', action='store_true')
    args = parser.parse_args(argv)
    jobs = _jobs(args)
    todo = [(t, p, args.out, args.method, args.segments, args.factor) for t, p in jobs
            if args.overwrite or not osp.isfile(osp.join(args.out, f'{t}.png'))]
    os.makedirs(args.out, exist_ok=True)
    counts, errors = [], []
    t0 = time.time()
    # one image per process at a time: processes are the parallelism
    pool = Pool(args.workers) if args.workers > 1 else None
    try:
        results = pool.imap_unordered(_work, todo) if pool else map(_work, todo)
        for token, count, error in tqdm(
                results, total=len(todo), desc=f'superpixels ({args.method})', unit='img'):
            if error:
                errors.append(error)
            else:
                counts.append(count)
    finally:
        if pool:
            pool.close()
            pool.join()
    summary = dict(
        images=len(jobs),
        computed=len(counts),
        cached=len(jobs) - len(todo),
        seconds=round(time.time() - t0, 1),
        labels=(min(counts), max(counts)) if counts else None)
    print(f'[superpixels] {summary}')
    if counts and max(counts) > args.segments:
        print(f'[superpixels] note: up to {max(counts)} labels for n_segments='
              f'{args.segments}; use superpixel_size >= {max(counts)} (SLIC adds segments '
              f'when enforcing connectivity)')
    if errors:
        raise SystemExit('\n'.join(errors[:10]))
    return summary


if __name__ == '__main__':
    main()
