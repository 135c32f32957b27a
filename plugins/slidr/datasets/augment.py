"""SLidR pre-training augmentations on numpy arrays."""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np

__all__ = ['rotate_flip_cloud', 'resized_crop', 'flip_horizontal', 'drop_cuboid']


def rotate_flip_cloud(xyz: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotation about z by ``U[0, 2π)``, then two coin flips mirroring x and y
    (float32). Pairings are index-based and stay valid."""
    angle = rng.uniform(0.0, 2.0 * math.pi)
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], np.float32)
    out = (xyz.astype(np.float32) @ rot.T).astype(np.float32)
    if rng.random() < 0.5:
        out[:, 0] = -out[:, 0]
    if rng.random() < 0.5:
        out[:, 1] = -out[:, 1]
    return out


def _draw_crop(
    h: int, w: int, rng: np.random.Generator, scale=(0.3, 1.0),
    ratio=(14 / 9, 17 / 9)) -> Tuple[int, int, int, int]:
    """Crop box ``(i, j, h, w)`` drawn like torchvision's RandomResizedCrop."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def resized_crop(image: np.ndarray,
                 superpixels: np.ndarray,
                 pairs: np.ndarray,
                 size: Tuple[int, int],
                 rng: np.random.Generator,
                 min_pairs: int = 1024,
                 min_fraction: float = 0.75,
                 max_tries: int = 100):
    """Random resized crop of one image, its superpixel map (nearest) and its
    pairings ``(P, 3) = (point, row, col)``; redrawn until more than
    ``min_pairs`` or more than ``min_fraction`` of the pairings stay inside.

    Returns:
        tuple: ``(image (h, w, 3), superpixels (h, w), pairs (P', 3))``.
    """
    import cv2
    h, w = image.shape[:2]
    out_h, out_w = size
    for _ in range(max_tries):
        i, j, ch, cw = _draw_crop(h, w, rng)
        rows = np.round((pairs[:, 1] - i) * out_h / ch).astype(np.int64)
        cols = np.round((pairs[:, 2] - j) * out_w / cw).astype(np.int64)
        inside = (rows >= 0) & (rows < out_h) & (cols >= 0) & (cols < out_w)
        if inside.sum() > min_pairs or inside.sum() > min_fraction * len(pairs):
            break
    img = cv2.resize(image[i:i + ch, j:j + cw], (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    sp = cv2.resize(
        superpixels[i:i + ch, j:j + cw], (out_w, out_h), interpolation=cv2.INTER_NEAREST)
    kept = np.stack([pairs[inside, 0], rows[inside], cols[inside]], 1)
    return img, sp, kept


def flip_horizontal(image: np.ndarray,
                    superpixels: np.ndarray,
                    pairs: np.ndarray,
                    rng: np.random.Generator,
                    p: float = 0.5):
    """With probability ``p`` mirror image, superpixels and ``col → W−1−col``."""
    if rng.random() >= p:
        return image, superpixels, pairs
    w = image.shape[1]
    pairs = pairs.copy()
    pairs[:, 2] = w - 1 - pairs[:, 2]
    return image[:, ::-1].copy(), superpixels[:, ::-1].copy(), pairs


def drop_cuboid(xyz: np.ndarray,
                pairs_per_image: list,
                rng: np.random.Generator,
                min_pairs: int = 1024):
    """DropCuboids: a box around a random point, half-extents ``e·c/2`` with
    ``e`` the cloud's per-axis extent and ``c ~ U[0, 0.2)``; points strictly
    inside are removed and pairings re-indexed. The whole transform is
    reverted if any image would keep fewer than ``min_pairs`` pairings.

    Args:
        xyz (np.ndarray): ``(N, 3)``.
        pairs_per_image (list): Per image ``(P, 3) = (point, row, col)``.

    Returns:
        tuple: ``(keep (N,) bool, pairs_per_image)`` (unchanged when reverted).
    """
    if xyz.shape[0] == 0:
        return np.ones(0, bool), pairs_per_image
    extent = xyz.max(0) - xyz.min(0)
    half = extent * rng.uniform(0.0, 0.2) / 2
    centre = xyz[int(rng.integers(0, xyz.shape[0]))]
    inside = np.all(np.abs(xyz - centre) < half, axis=1)
    keep = ~inside
    new_index = np.cumsum(keep) - 1
    out = []
    for pairs in pairs_per_image:
        kept = pairs[keep[pairs[:, 0]]]
        if len(kept) < min_pairs:
            return np.ones(xyz.shape[0], bool), pairs_per_image
        kept = kept.copy()
        kept[:, 0] = new_index[kept[:, 0]]
        out.append(kept)
    return keep, out
