"""A small SemanticKITTI tree in the real layout (``velodyne/*.bin``,
``labels/*.label``, ``calib.txt`` per sequence), read by
:mod:`plugins.slidr.datasets.semantickitti` like the real dataset."""
from __future__ import annotations

import os

import numpy as np

from ..slidr.datasets.semantickitti import TRAIN_SEQUENCES, VAL_SEQUENCES

__all__ = ['make_semantickitti_synthetic', 'make_demo', 'FORMAT']

#: the format's name in ``tools/data/make_demo_data.py`` and under ``data/demo/``
FORMAT = 'semantickitti'


def make_semantickitti_synthetic(root: str,
                                 scans_per_sequence: int = 2,
                                 points: int = 4000,
                                 seed: int = 0) -> str:
    """Write all 10 train sequences and 08 with a few scans: a ground plane
    (road / sidewalk), box "cars" and "buildings", labels with instance ids in
    the high 16 bits, and a ``calib.txt``. Returns ``root``."""
    rng = np.random.default_rng(seed)
    raw_ids = {'road': 40, 'sidewalk': 48, 'car': 10, 'building': 50, 'vegetation': 70}
    for seq in TRAIN_SEQUENCES + VAL_SEQUENCES:
        folder = os.path.join(root, 'dataset', 'sequences', seq)
        for sub in ('velodyne', 'labels'):
            os.makedirs(os.path.join(folder, sub), exist_ok=True)
        with open(os.path.join(folder, 'calib.txt'), 'w') as f:
            p = '7.0e+02 0 6.0e+02 0 0 7.0e+02 1.8e+02 0 0 0 1 0'
            for k in ('P0', 'P1', 'P2', 'P3'):
                f.write(f'{k}: {p}\n')
            f.write('Tr: 0 -1 0 0 0 0 -1 0 1 0 0 0\n')
        for s in range(scans_per_sequence):
            n = points
            xyz = np.zeros((n, 3), np.float32)
            kind = rng.choice(list(raw_ids), n, p=[0.35, 0.15, 0.2, 0.2, 0.1])
            xyz[:, 0] = rng.uniform(-40, 40, n)
            xyz[:, 1] = rng.uniform(-40, 40, n)
            xyz[:, 2] = -1.7
            xyz[kind == 'sidewalk', 1] = np.sign(xyz[kind == 'sidewalk', 1]) * rng.uniform(
                6, 9, int((kind == 'sidewalk').sum()))
            xyz[kind == 'road', 1] = rng.uniform(-5.5, 5.5, int((kind == 'road').sum()))
            for name, height, lateral in (('car', (-1.7, -0.2), (3, 5)), ('building', (-1.7, 8.0),
                                                                          (12, 20)),
                                          ('vegetation', (-1.7, 3.0), (9, 12))):
                m = kind == name
                xyz[m, 2] = rng.uniform(*height, int(m.sum()))
                xyz[m, 1] = np.sign(rng.uniform(-1, 1, int(m.sum()))) * rng.uniform(
                    *lateral, int(m.sum()))
            remission = np.where(kind == 'road', 0.2, 0.6) + rng.uniform(0, 0.2, n)
            scan = np.concatenate([xyz, remission[:, None]], 1).astype(np.float32)
            sem = np.array([raw_ids[k] for k in kind], np.uint32)
            instance = (rng.integers(0, 5, n).astype(np.uint32) << 16)
            scan.tofile(os.path.join(folder, 'velodyne', f'{s:06d}.bin'))
            (sem | instance).astype(np.uint32).tofile(
                os.path.join(folder, 'labels', f'{s:06d}.label'))
    return root


def make_demo(out: str, seed: int = 0, small: bool = False) -> str:
    """The demo's sequences: 3 scans each (``small``: 1)."""
    return make_semantickitti_synthetic(out, scans_per_sequence=1 if small else 3, seed=seed)
