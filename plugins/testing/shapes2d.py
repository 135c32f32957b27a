"""A small 2D segmentation set in mmseg's on-disk layout, for demos and tests.

    root/img_dir/{train,val}/NNNN.png   RGB uint8
    root/ann_dir/{train,val}/NNNN.png   uint8 class ids (0 background, 1 disk,
                                        2 bar), 255 = not annotated

Each image holds a disk and a bar in noise, each class with its own colour; a
two-pixel frame of every label map is 255, so the ignore path is exercised.
"""
from __future__ import annotations

import os

import numpy as np

__all__ = ['make_shapes2d', 'IGNORE_INDEX', 'make_demo', 'FORMAT']

#: the format's name in ``tools/data/make_demo_data.py`` and under ``data/demo/``
FORMAT = 'shapes2d'

IGNORE_INDEX = 255


def make_shapes2d(root: str,
                  num_train: int = 48,
                  num_val: int = 12,
                  size: int = 64,
                  seed: int = 0,
                  frame: int = 2) -> str:
    """Write the set; returns ``root``.

    Raises:
        ValueError: On ``size < 32`` or no training images.
    """
    import cv2

    if size < 32 or num_train < 1:
        raise ValueError(f'need size >= 32 and num_train >= 1, got {size}, {num_train}')
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    colours = np.array([[40, 40, 40], [200, 80, 70], [70, 110, 200]], np.float32)
    for split, count in (('train', num_train), ('val', num_val)):
        for sub in ('img_dir', 'ann_dir'):
            os.makedirs(os.path.join(root, sub, split), exist_ok=True)
        for i in range(count):
            label = np.zeros((size, size), np.uint8)
            cy, cx = rng.uniform(0.3, 0.7, 2) * size
            r = rng.uniform(0.1, 0.2) * size
            label[(yy - cy)**2 + (xx - cx)**2 <= r * r] = 1
            angle = rng.uniform(0, np.pi)
            by, bx = rng.uniform(0.25, 0.75, 2) * size
            along = (xx - bx) * np.cos(angle) + (yy - by) * np.sin(angle)
            across = -(xx - bx) * np.sin(angle) + (yy - by) * np.cos(angle)
            label[(np.abs(along) <= 0.3 * size) & (np.abs(across) <= 0.05 * size)] = 2
            image = colours[label] + rng.normal(0, 35, (size, size, 3))
            image = np.clip(image, 0, 255).astype(np.uint8)
            if frame:
                label[:frame], label[-frame:] = IGNORE_INDEX, IGNORE_INDEX
                label[:, :frame], label[:, -frame:] = IGNORE_INDEX, IGNORE_INDEX
            name = f'{i:04d}.png'
            cv2.imwrite(os.path.join(root, 'img_dir', split, name), image[..., ::-1])
            cv2.imwrite(os.path.join(root, 'ann_dir', split, name), label)
    return root


def make_demo(out: str, seed: int = 0, small: bool = False) -> str:
    """The demo's mmseg set: 48 train / 12 val images (``small``: 8 / 4)."""
    return make_shapes2d(out, num_train=8 if small else 48, num_val=4 if small else 12, seed=seed)
