"""SemanticKITTI on disk: scans, labels, calibration,
and the 19-class learning map (plugins.testing.semantickitti writes a synthetic tree).

    dataset/sequences/XX/velodyne/NNNNNN.bin   float32 (N, 4): x, y, z, remission
    dataset/sequences/XX/labels/NNNNNN.label   uint32 (N,): low 16 bits semantic id
    dataset/sequences/XX/calib.txt             P0..P3 (3x4), Tr (velodyne -> cam0, 3x4)
"""
from __future__ import annotations

import os
from typing import Dict, List, Sequence, Tuple

import numpy as np

__all__ = [
    'KITTI_CLASSES', 'TRAIN_SEQUENCES', 'VAL_SEQUENCES', 'learning_map', 'read_scan', 'read_labels',
    'read_calib', 'scan_paths'
]

KITTI_CLASSES = ('ignore', 'car', 'bicycle', 'motorcycle', 'truck', 'other-vehicle', 'person',
                 'bicyclist', 'motorcyclist', 'road', 'parking', 'sidewalk', 'other-ground',
                 'building', 'fence', 'vegetation', 'trunk', 'terrain', 'pole', 'traffic-sign')
TRAIN_SEQUENCES = ('00', '01', '02', '03', '04', '05', '06', '07', '09', '10')
VAL_SEQUENCES = ('08', )
_MAP = {
    10: 1,
    11: 2,
    15: 3,
    18: 4,
    13: 5,
    16: 5,
    20: 5,
    30: 6,
    31: 7,
    32: 8,
    40: 9,
    60: 9,
    44: 10,
    48: 11,
    49: 12,
    50: 13,
    51: 14,
    70: 15,
    71: 16,
    72: 17,
    80: 18,
    81: 19,
    252: 1,
    253: 7,
    254: 6,
    255: 8,
    256: 5,
    257: 5,
    259: 5,
    258: 4
}


def learning_map() -> np.ndarray:
    """Lookup table semantic id (0–259) → the 19 classes (0 = ignore)."""
    lut = np.zeros(260, np.int64)
    for raw, cls in _MAP.items():
        lut[raw] = cls
    return lut


def read_scan(path: str) -> np.ndarray:
    """``(N, 4)`` float32 points.

    Raises:
        FileNotFoundError: If the scan is missing.
        ValueError: If its size is not a multiple of 4 floats.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'scan {path} does not exist')
    raw = np.fromfile(path, np.float32)
    if raw.size % 4:
        raise ValueError(f'{path} holds {raw.size} floats, not a multiple of 4')
    return raw.reshape(-1, 4)


def read_labels(path: str, num_points: int) -> np.ndarray:
    """Semantic ids (low 16 bits of the uint32 labels).

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: If the count differs from ``num_points``.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'label file {path} does not exist')
    raw = np.fromfile(path, np.uint32)
    if raw.size != num_points:
        raise ValueError(f'{path} has {raw.size} labels for {num_points} points')
    return (raw & 0xFFFF).astype(np.int64)


def read_calib(path: str) -> Dict[str, np.ndarray]:
    """``P0``–``P3`` (3×4) and ``Tr`` (4×4, velodyne → cam0).

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: If a value is not a number or ``P2``/``Tr`` lacks numbers
            (names the file and line).
        KeyError: If ``P2`` or ``Tr`` is absent (names the file).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'calibration {path} does not exist')
    out = {}
    sizes = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if ':' not in line:
                continue
            key, values = line.split(':', 1)
            try:
                numbers = np.array([float(v) for v in values.split()])
            except ValueError:
                raise ValueError(f'{path}, line {lineno}: {key.strip()} holds a value that is '
                                 f'not a number ({values.strip()[:60]!r})') from None
            sizes[key.strip()] = numbers.size
            if numbers.size == 12:
                out[key.strip()] = numbers.reshape(3, 4)
    short = [f'{k} has {sizes[k]} numbers' for k in ('P2', 'Tr') if k in sizes and k not in out]
    if short:
        raise ValueError(f'{path}: {", ".join(short)}, expected 12 (3x4); a truncated file?')
    missing = [k for k in ('P2', 'Tr') if k not in out]
    if missing:
        raise KeyError(f'{path} lacks {missing}')
    tr = np.eye(4)
    tr[:3] = out['Tr']
    out['Tr'] = tr
    return out


def scan_paths(root: str, sequences: Sequence[str]) -> List[Tuple[str, str]]:
    """Sorted ``(scan, label)`` paths, built from path components (a root
    containing "bin" or "velodyne" is safe).

    Raises:
        FileNotFoundError: If a sequence folder is missing.
    """
    pairs = []
    for seq in sequences:
        folder = os.path.join(root, 'dataset', 'sequences', seq)
        velodyne = os.path.join(folder, 'velodyne')
        if not os.path.isdir(velodyne):
            raise FileNotFoundError(f'sequence folder {velodyne} does not exist')
        for name in sorted(os.listdir(velodyne)):
            if name.endswith('.bin'):
                stem = name[:-len('.bin')]
                pairs.append((os.path.join(velodyne,
                                           name), os.path.join(folder, 'labels', stem + '.label')))
    return pairs
