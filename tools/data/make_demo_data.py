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

from plugins.testing.coco_shapes import make_coco_shapes  # noqa: E402
from plugins.testing.msd import make_msd_synthetic  # noqa: E402
from plugins.testing.shapes2d import make_shapes2d  # noqa: E402
from plugins.testing.xdviolence import make_xdviolence_synthetic  # noqa: E402
from plugins.testing.nuscenes import make_nuscenes_synthetic  # noqa: E402
from plugins.testing.semantickitti import make_semantickitti_synthetic  # noqa: E402

MAKERS = {
    'coco': lambda out, seed, small: make_coco_shapes(
        out, splits={'train': 24, 'val': 8} if small else None, seed=seed),
    # MSD layout: <out>/Task90_Synthetic/{dataset.json,imagesTr,labelsTr,imagesTs}
    'msd': lambda out, seed, small: make_msd_synthetic(
        out, 'Task90_Synthetic', num_train=4 if small else 10, num_test=2,
        size=32 if small else 48, num_classes=3, seed=seed),
    # mmseg layout: <out>/{img_dir,ann_dir}/{train,val}/*.png
    'shapes2d': lambda out, seed, small: make_shapes2d(
        out, num_train=8 if small else 48, num_val=4 if small else 12, seed=seed),
    # XD-Violence feature layout: RGB/, RGBTest/, vggish-features/, *.list, gt.npy
    'xdv': lambda out, seed, small: make_xdviolence_synthetic(
        out, num_train=(4, 4) if small else (24, 24), num_test=(3, 2) if small else (8, 6),
        seed=seed),
    # nuScenes(-lidarseg) v1.0-mini layout that the official devkit loads
    'nuscenes': lambda out, seed, small: make_nuscenes_synthetic(
        out, samples_per_scene=1 if small else 4, seed=seed),
    # SemanticKITTI layout: dataset/sequences/XX/{velodyne,labels,calib.txt}
    'semantickitti': lambda out, seed, small: make_semantickitti_synthetic(
        out, scans_per_sequence=1 if small else 3, seed=seed),
}


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
