"""SLIC superpixels for SLidR, stored as uint8 PNG label maps.

``slic_reference`` is the reference setting (scikit-image SLIC at full
resolution, ``n_segments=150, compactness=6, sigma=3, start_label=0``).
``slic_fast`` runs the same algorithm, compiled (``plugins.slidr.datasets.slic``), on an
image down-scaled by ``factor`` (area interpolation, ``sigma / factor``) and
up-samples the labels with nearest neighbour: a different segmentation, many
times faster; :func:`boundary_agreement` measures how close the two are.
"""
from __future__ import annotations

import os
import warnings
from typing import Optional, Tuple

import numpy as np

__all__ = [
    'slic_reference', 'slic_fast', 'boundary_agreement', 'save_labels', 'load_labels', 'blob_image'
]


def _to_uint8(labels: np.ndarray) -> np.ndarray:
    top = int(labels.max()) if labels.size else 0
    if top > 255:
        raise ValueError(f'SLIC produced label {top}; uint8 storage would wrap ids >= 256')
    return labels.astype(np.uint8)


def slic_reference(image: np.ndarray,
                   n_segments: int = 150,
                   compactness: float = 6.0,
                   sigma: float = 3.0) -> np.ndarray:
    """scikit-image SLIC at full resolution (the reference), uint8 labels.

    Raises:
        ValueError: On a non-RGB-uint8 image or more than 256 labels.
    """
    from skimage.segmentation import slic

    from .slic import check_rgb_image
    image = check_rgb_image(image)
    return _to_uint8(
        slic(image, n_segments=n_segments, compactness=compactness, sigma=sigma, start_label=0))


def slic_fast(image: np.ndarray,
              n_segments: int = 150,
              compactness: float = 6.0,
              sigma: float = 3.0,
              factor: int = 2,
              preprocess: str = 'opencv',
              parallel: bool = False) -> np.ndarray:
    """SLIC on a ``factor``× smaller image, labels up-sampled (nearest), uint8.

    The clustering is scikit-image's algorithm compiled with numba
    (:func:`plugins.slidr.datasets.slic.slic_labels`);
    ``preprocess='opencv'`` computes the Lab image and its blur with OpenCV in
    float32, ``'skimage'`` with scikit-image (then ``factor=1`` reproduces
    :func:`slic_reference` label for label). Without numba it falls back to
    scikit-image's SLIC on the small image, with a warning.

    ``parallel`` is passed to :func:`~plugins.slidr.datasets.slic.slic_labels`. Off by
    default: the serial kernel was as fast on idle cores and faster on shared
    ones (``tools/benchmark/slidr.py``), and under CPU load the row-parallel
    engine was seen to give labels that differ between runs.

    Raises:
        ValueError: As :func:`slic_reference`, or on ``factor < 1``.
    """
    import cv2

    from .slic import check_rgb_image, numba_available, slic_labels
    image = check_rgb_image(image)
    if factor < 1:
        raise ValueError(f'factor must be >= 1, got {factor}')
    h, w = image.shape[:2]
    small = image if factor == 1 else cv2.resize(
        image, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
    if numba_available():
        labels = slic_labels(
            small,
            n_segments=n_segments,
            compactness=compactness,
            sigma=sigma / factor,
            preprocess=preprocess,
            parallel=parallel)
    else:
        global _WARNED_NO_NUMBA
        if not _WARNED_NO_NUMBA:
            warnings.warn(
                'numba is not installed: slic_fast uses scikit-image\'s slower SLIC '
                '(pip install numba)',
                RuntimeWarning,
                stacklevel=2)
            _WARNED_NO_NUMBA = True
        from skimage.segmentation import slic
        labels = slic(
            small,
            n_segments=n_segments,
            compactness=compactness,
            sigma=sigma / factor,
            start_label=0)
    if factor != 1:
        labels = cv2.resize(labels.astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST)
    return _to_uint8(labels)


_WARNED_NO_NUMBA = False


def _boundaries(labels: np.ndarray) -> np.ndarray:
    edge = np.zeros(labels.shape, bool)
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    return edge


def boundary_agreement(reference: np.ndarray,
                       other: np.ndarray,
                       tolerance: int = 2) -> Tuple[float, float]:
    """Boundary recall and precision of ``other`` against ``reference``: the
    fraction of reference boundary pixels with an ``other`` boundary within
    ``tolerance`` pixels (Chebyshev), and vice versa.

    Raises:
        ValueError: On different shapes.
    """
    import cv2
    if reference.shape != other.shape:
        raise ValueError(f'label maps differ in shape: {reference.shape} vs {other.shape}')
    a, b = _boundaries(reference), _boundaries(other)
    kernel = np.ones((2 * tolerance + 1, ) * 2, np.uint8)
    near_b = cv2.dilate(b.astype(np.uint8), kernel) > 0
    near_a = cv2.dilate(a.astype(np.uint8), kernel) > 0
    recall = float((a & near_b).sum() / max(a.sum(), 1))
    precision = float((b & near_a).sum() / max(b.sum(), 1))
    return recall, precision


def save_labels(labels: np.ndarray, path: str) -> None:
    """Write a uint8 label map as a single-channel PNG (atomically).

    Raises:
        ValueError: On a non-2D or non-uint8 map.
    """
    import cv2
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f'superpixel maps are 2-D uint8, got {labels.dtype} {labels.shape}')
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + '.tmp.png'
    if not cv2.imwrite(tmp, labels):
        raise OSError(f'could not write {path}')
    os.replace(tmp, path)


def load_labels(path: str, stride: Optional[int] = None) -> np.ndarray:
    """Read a superpixel PNG; with ``stride`` check every id is below it.

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: If an id is ≥ ``stride`` (names the file).
    """
    import cv2
    if not os.path.isfile(path):
        raise FileNotFoundError(f'superpixel map {path} does not exist (run '
                                f'tools/data/make_superpixels.py)')
    labels = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if stride is not None and labels.size and int(labels.max()) >= stride:
        raise ValueError(f'{path} holds superpixel id {int(labels.max())} >= superpixel_size '
                         f'{stride}')
    return labels


def blob_image(height: int = 900, width: int = 1600, blobs: int = 40, seed: int = 0) -> np.ndarray:
    """A smooth RGB test image of coloured blobs (SLIC needs structure, not noise)."""
    import cv2
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.float32) + rng.uniform(40, 90, 3)
    for _ in range(blobs):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(width // 30,
                                 width // 6)), int(rng.integers(height // 30, height // 6)))
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
    image = cv2.GaussianBlur(image, (0, 0), 3)
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)
