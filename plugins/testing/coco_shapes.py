"""Small synthetic datasets in real on-disk formats, deterministic from a seed.

The detection set is COCO format: ``<root>/<split>/*.png`` plus
``<root>/annotations/instances_<split>.json`` with ``images``,
``annotations`` (``bbox`` as ``[x, y, w, h]`` in pixels, ``area``,
``iscrowd``, polygon ``segmentation``) and ``categories``. Objects are filled
squares and discs on a textured background, so a detector learns them in
minutes on a CPU.
"""
from __future__ import annotations

import json
import math
import os
from typing import Dict, List, Mapping, Optional

import numpy as np

__all__ = ['COCO_SHAPES_CLASSES', 'make_coco_shapes', 'make_demo', 'FORMAT']

#: the format's name in ``tools/data/make_demo_data.py`` and under ``data/demo/``
FORMAT = 'coco'

COCO_SHAPES_CLASSES = ('square', 'disc')


def _draw_image(rng: np.random.Generator, size: int, max_objects: int):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = rng.uniform(40, 90, size=3)
    grad = rng.uniform(-0.2, 0.2, size=(2, 3))
    img = (base[None, None] + xx[..., None] * grad[0] + yy[..., None] * grad[1])
    img = img + rng.normal(0, 6, size=(size, size, 3))
    objects = []
    n = int(rng.integers(1, max_objects + 1))
    for _ in range(n * 4):  # rejection sampling against heavy overlap
        if len(objects) == n:
            break
        side = float(rng.uniform(0.16, 0.38) * size)
        x0 = float(rng.uniform(0, size - side))
        y0 = float(rng.uniform(0, size - side))
        box = (x0, y0, x0 + side, y0 + side)
        if any(_iou(box, o['box']) > 0.1 for o in objects):
            continue
        label = int(rng.integers(0, len(COCO_SHAPES_CLASSES)))
        color = rng.uniform(150, 255, size=3) * (rng.uniform(size=3) > 0.3)
        color = np.maximum(color, 60)
        if label == 0:  # square
            mask = (xx >= x0) & (xx < x0 + side) & (yy >= y0) & (yy < y0 + side)
            polygon = [x0, y0, x0 + side, y0, x0 + side, y0 + side, x0, y0 + side]
        else:  # disc inscribed in the box
            cx, cy, r = x0 + side / 2, y0 + side / 2, side / 2
            mask = (xx + 0.5 - cx)**2 + (yy + 0.5 - cy)**2 <= r * r
            angles = np.linspace(0, 2 * math.pi, 16, endpoint=False)
            polygon = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)],
                               1).reshape(-1).tolist()
        img[mask] = color
        objects.append(dict(box=box, label=label, polygon=polygon, area=float(mask.sum())))
    return np.clip(img, 0, 255).astype(np.uint8), objects


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def make_coco_shapes(root: str,
                     splits: Optional[Mapping[str, int]] = None,
                     size: int = 128,
                     max_objects: int = 3,
                     seed: int = 0) -> Dict[str, str]:
    """Write a COCO-format detection dataset of squares and discs.

    Args:
        root (str): Output folder; created if missing.
        splits (Mapping[str, int]): Split name to number of images
            (default ``{'train': 96, 'val': 24}``).
        size (int): Image side in pixels (square images).
        max_objects (int): At most this many objects per image (at least 1).
        seed (int): Everything is a function of it.

    Returns:
        dict: Split name to its annotation file path.

    Raises:
        ValueError: On a size below 32, a non-positive split size or
            ``max_objects < 1``.
    """
    import cv2  # shipped with mmcv; only needed when writing

    splits = dict(splits or {'train': 96, 'val': 24})
    if size < 32:
        raise ValueError(f'size must be >= 32 pixels, got {size}')
    if max_objects < 1:
        raise ValueError(f'max_objects must be >= 1, got {max_objects}')
    for name, count in splits.items():
        if int(count) <= 0:
            raise ValueError(f'split {name!r} needs a positive image count, '
                             f'got {count}')
    os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
    categories = [
        dict(id=i + 1, name=n, supercategory='shape') for i, n in enumerate(COCO_SHAPES_CLASSES)
    ]
    out = {}
    for split_index, (split, count) in enumerate(sorted(splits.items())):
        rng = np.random.default_rng([seed, split_index])
        img_dir = os.path.join(root, split)
        os.makedirs(img_dir, exist_ok=True)
        images: List[dict] = []
        annotations: List[dict] = []
        for i in range(int(count)):
            img, objects = _draw_image(rng, size, max_objects)
            file_name = f'{i:06d}.png'
            cv2.imwrite(os.path.join(img_dir, file_name), img[..., ::-1])
            images.append(dict(id=i + 1, file_name=file_name, width=size, height=size))
            for obj in objects:
                x1, y1, x2, y2 = obj['box']
                annotations.append(
                    dict(
                        id=len(annotations) + 1,
                        image_id=i + 1,
                        category_id=obj['label'] + 1,
                        bbox=[round(x1, 2),
                              round(y1, 2),
                              round(x2 - x1, 2),
                              round(y2 - y1, 2)],
                        area=obj['area'],
                        iscrowd=0,
                        segmentation=[[round(v, 2) for v in obj['polygon']]]))
        ann_file = os.path.join(root, 'annotations', f'instances_{split}.json')
        with open(ann_file, 'w') as f:
            json.dump(
                dict(
                    images=images,
                    annotations=annotations,
                    categories=categories,
                    info=dict(description='synthetic shapes', seed=seed)), f)
        out[split] = ann_file
    return out


def make_demo(out: str, seed: int = 0, small: bool = False) -> str:
    """The demo's COCO set: 96 train / 24 val images (``small``: 24 / 8)."""
    return make_coco_shapes(out, splits={'train': 24, 'val': 8} if small else None, seed=seed)
