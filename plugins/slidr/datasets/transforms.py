"""SLidR's augmentations as pipeline transforms (host-free; the mmengine
adapter registers them in ``TRANSFORMS``, so configs list them by ``type``).

A transform takes and returns the sample's ``results`` dict:

* ``xyz`` ``(N, 3)`` float32 and ``points`` ``(N, 4)`` (xyz + intensity) of
  the cloud;
* for pre-training, per camera: ``images`` ``(H, W, 3)`` uint8, ``superpixels``
  ``(H, W)`` and ``pairs`` ``(P, 3) = (point, row, col)``;
* ``rng``: the sample's own ``numpy.random.Generator``. Every random draw
  comes from it (not from numpy's global stream), so a resumed run redraws
  exactly what the interrupted one drew (see ``plugins.core.sample_seed``).

The pre-training pipeline of the paper, in the order its draws are made:

    pipeline=[dict(type='RandomCameraOrder'), dict(type='RandomRotateFlipCloud'),
              dict(type='DropCuboids', min_pairs=1024),
              dict(type='RandomResizedCropFlipImages', size=(224, 416), min_pairs=1024)]
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from .augment import drop_cuboid, flip_horizontal, resized_crop, rotate_flip_cloud

__all__ = [
    'RandomRotateFlipCloud', 'RandomCameraOrder', 'DropCuboids', 'RandomResizedCropFlipImages',
    'ResizeImages'
]


def _size(size: Sequence[int], name: str) -> Tuple[int, int]:
    if len(size) != 2 or any(int(s) <= 0 for s in size):
        raise ValueError(f'{name} must be (H, W) with positive sides, got {tuple(size)}')
    return int(size[0]), int(size[1])


def _rng(results: dict, name: str) -> np.random.Generator:
    rng = results.get('rng')
    if not isinstance(rng, np.random.Generator):
        raise KeyError(f'{name} draws from results["rng"], the sample\'s own '
                       f'numpy Generator; the dataset puts it there')
    return rng


class RandomRotateFlipCloud:
    """Rotate the cloud about z by ``U[0, 2π)``, then mirror x and y each with
    probability ½. Pairings index points and stay valid.

    Raises:
        KeyError: If ``results`` has no ``xyz`` or ``rng``.
    """

    def __call__(self, results: dict) -> dict:
        results['xyz'] = rotate_flip_cloud(results['xyz'], _rng(results, 'RandomRotateFlipCloud'))
        return results

    def __repr__(self) -> str:
        return 'RandomRotateFlipCloud()'


class RandomCameraOrder:
    """Shuffle the cameras: images, superpixel maps and pairings together."""

    def __call__(self, results: dict) -> dict:
        order = list(range(len(results['images'])))
        _rng(results, 'RandomCameraOrder').shuffle(order)
        for key in ('images', 'superpixels', 'pairs', 'cameras'):
            if key in results:
                results[key] = [results[key][i] for i in order]
        return results

    def __repr__(self) -> str:
        return 'RandomCameraOrder()'


class DropCuboids:
    """Remove the points inside a random box around a random point (half-extents
    ``e·c/2``, ``e`` the cloud's extent per axis, ``c ~ U[0, 0.2)``) and
    re-index the pairings; undone when an image would keep fewer than
    ``min_pairs`` pairings.

    Args:
        min_pairs (int): See above (1024).

    Raises:
        ValueError: On a negative ``min_pairs``.
    """

    def __init__(self, min_pairs: int = 1024) -> None:
        if int(min_pairs) < 0:
            raise ValueError(f'min_pairs must be >= 0, got {min_pairs}')
        self.min_pairs = int(min_pairs)

    def __call__(self, results: dict) -> dict:
        keep, pairs = drop_cuboid(results['xyz'], results['pairs'], _rng(results, 'DropCuboids'),
                                  self.min_pairs)
        results['xyz'], results['points'] = results['xyz'][keep], results['points'][keep]
        results['pairs'] = pairs
        return results

    def __repr__(self) -> str:
        return f'DropCuboids(min_pairs={self.min_pairs})'


class RandomResizedCropFlipImages:
    """Per camera: a random resized crop to ``size`` (area ``U[0.3, 1]``,
    aspect ``[14/9, 17/9]``, redrawn until more than ``min_pairs`` or 75 % of
    the pairings stay inside; superpixels resized nearest), then a horizontal
    flip with probability ``flip_prob``. Crop and flip alternate per camera,
    as the draws of the original implementation do.

    Args:
        size (tuple): Output ``(H, W)`` (224, 416).
        min_pairs (int): Crop redraw threshold (1024).
        flip_prob (float): Flip probability (0.5).

    Raises:
        ValueError: On a bad size or probability.
    """

    def __init__(self,
                 size: Sequence[int] = (224, 416),
                 min_pairs: int = 1024,
                 flip_prob: float = 0.5) -> None:
        self.size = _size(size, 'size')
        if not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f'flip_prob must be in [0, 1], got {flip_prob}')
        self.min_pairs = int(min_pairs)
        self.flip_prob = float(flip_prob)

    def __call__(self, results: dict) -> dict:
        rng = _rng(results, 'RandomResizedCropFlipImages')
        out = ([], [], [])
        for image, sp, p in zip(results['images'], results['superpixels'], results['pairs']):
            image, sp, p = resized_crop(image, sp, p, self.size, rng, self.min_pairs)
            image, sp, p = flip_horizontal(image, sp, p, rng, self.flip_prob)
            for lst, value in zip(out, (image, sp, p)):
                lst.append(value)
        results['images'], results['superpixels'], results['pairs'] = map(list, out)
        return results

    def __repr__(self) -> str:
        return (f'RandomResizedCropFlipImages(size={self.size}, min_pairs={self.min_pairs}, '
                f'flip_prob={self.flip_prob})')


class ResizeImages:
    """Resize every camera to ``size`` (image linear, superpixels nearest) and
    scale the pairings' pixels, clipped to the image (no randomness: the
    validation pipeline).

    Args:
        size (tuple): Output ``(H, W)``.

    Raises:
        ValueError: On a bad size.
    """

    def __init__(self, size: Sequence[int] = (224, 416)) -> None:
        self.size = _size(size, 'size')

    def __call__(self, results: dict) -> dict:
        import cv2
        ch, cw = self.size
        images, sps, pairs = [], [], []
        for image, sp, p in zip(results['images'], results['superpixels'], results['pairs']):
            h, w = image.shape[:2]
            images.append(cv2.resize(image, (cw, ch), interpolation=cv2.INTER_LINEAR))
            sps.append(cv2.resize(sp, (cw, ch), interpolation=cv2.INTER_NEAREST))
            pairs.append(
                np.stack([
                    p[:, 0],
                    np.minimum(np.round(p[:, 1] * ch / h), ch - 1),
                    np.minimum(np.round(p[:, 2] * cw / w), cw - 1)
                ], 1).astype(np.int64))
        results['images'], results['superpixels'], results['pairs'] = images, sps, pairs
        return results

    def __repr__(self) -> str:
        return f'ResizeImages(size={self.size})'
