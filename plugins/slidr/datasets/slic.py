"""SLIC superpixels compiled with numba: scikit-image's algorithm, label for label.

:func:`slic_labels` reproduces ``skimage.segmentation.slic`` for an RGB uint8
image with its default options (Lab colour, 10 k-means iterations, ±2 grid
steps search windows, connectivity enforcement with sizes 0.5–3× the grid
cell): the same float64 operations in the same order, so the labels are
identical (``tests/slidr/test_slic.py`` checks it). Only the engine
differs: every step is compiled; on request (``parallel=True``) the
assignment step runs in parallel over image rows (each pixel still visits
the clusters in increasing order, so ties resolve as in the sequential loop).
Serial is the default: on the 2-core machines measured it was as fast when
the cores were idle and faster when they were shared (docs/slidr.md).

The pre-processing (scaling to [0, 1], ``rgb2lab``, the Gaussian blur) calls
scikit-image's own functions with the arguments ``slic`` uses.
"""
from __future__ import annotations

import multiprocessing
import os
from typing import Tuple

import numpy as np

__all__ = ['slic_labels', 'numba_available', 'warm_up', 'check_rgb_image']

_DBL_MAX = 1.7976931348623157e308

try:  # pragma: no cover - exercised through numba_available()
    import numba
    _HAVE_NUMBA = True
    if not ({'NUMBA_THREADING_LAYER', 'NUMBA_THREADING_LAYER_PRIORITY'} & set(os.environ)):
        # an older TBB on the path (open3d ships one) only earns a warning
        numba.config.THREADING_LAYER_PRIORITY = ['omp', 'workqueue', 'tbb']
except ImportError:  # pragma: no cover
    numba = None
    _HAVE_NUMBA = False


def check_rgb_image(image: np.ndarray) -> np.ndarray:
    """``image`` as an array, checked to be a non-empty ``(H, W, 3)`` uint8 RGB image.

    Raises:
        ValueError: Otherwise (naming the dtype and shape).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.size == 0:
        raise ValueError(f'expected a non-empty RGB uint8 array (H, W, 3), got {image.dtype} '
                         f'{image.shape} (convert PIL images with np.asarray first)')
    return image


def numba_available() -> bool:
    """Whether the compiled SLIC engine can run (numba importable)."""
    return _HAVE_NUMBA


if _HAVE_NUMBA:
    _jit = numba.njit(cache=True, nogil=True, error_model='numpy')
    _pjit = numba.njit(cache=True, nogil=True, parallel=True, error_model='numpy')
    _prange = numba.prange

    @_jit
    def _assign_row(features, centres, step_y, step_x, spatial_weight, labels, distance, y):
        """One row of the assignment sweep; returns whether a pixel was written.

        features: (H, W, C) float64, colour already divided by compactness.
        centres: (K, 3 + C) float64 rows [z, y, x, colour...]; a NaN row (an
        empty cluster) never wins, as in the sequential loop. Each pixel sees
        the clusters in increasing order, so ties resolve as there.
        """
        height, width, channels = features.shape
        wrote = False
        for x in range(width):
            distance[y, x] = _DBL_MAX
        for k in range(centres.shape[0]):
            cy = centres[k, 1]
            cx = centres[k, 2]
            if cy != cy or cx != cx:
                continue
            y_lo = int(max(cy - 2 * step_y, 0.0))
            y_hi = int(min(cy + 2 * step_y + 1, float(height)))
            if y < y_lo or y >= y_hi:
                continue
            x_lo = int(max(cx - 2 * step_x, 0.0))
            x_hi = int(min(cx + 2 * step_x + 1, float(width)))
            cz = centres[k, 0]
            dz = cz * cz
            dy = cy - y
            dy = dy * dy
            for x in range(x_lo, x_hi):
                dx = cx - x
                dx = dx * dx
                total = (dz + dy + dx) * spatial_weight
                colour = 0.0
                for c in range(channels):
                    t = features[y, x, c] - centres[k, 3 + c]
                    colour += t * t
                total += colour
                if distance[y, x] > total:
                    labels[y, x] = k
                    distance[y, x] = total
                    wrote = True
        return wrote

    @_pjit
    def _assign_parallel(features, centres, step_y, step_x, spatial_weight, labels, distance):
        """The assignment sweep, rows in parallel; whether any pixel was written."""
        wrote = np.zeros(features.shape[0], np.uint8)
        for y in _prange(features.shape[0]):
            if _assign_row(features, centres, step_y, step_x, spatial_weight, labels, distance, y):
                wrote[y] = 1
        return wrote.any()

    @_jit
    def _assign_serial(features, centres, step_y, step_x, spatial_weight, labels, distance):
        """The assignment sweep on one thread (inside worker processes)."""
        wrote = False
        for y in range(features.shape[0]):
            if _assign_row(features, centres, step_y, step_x, spatial_weight, labels, distance, y):
                wrote = True
        return wrote

    @_jit
    def _update(features, labels, centres):
        """Cluster means in raster order (the reference's summation order)."""
        height, width, channels = features.shape
        n_centres = centres.shape[0]
        counts = np.zeros(n_centres, np.int64)
        centres[:, :] = 0.0
        for y in range(height):
            for x in range(width):
                k = labels[y, x]
                counts[k] += 1
                centres[k, 1] += y
                centres[k, 2] += x
                for c in range(channels):
                    centres[k, 3 + c] += features[y, x, c]
        for k in range(n_centres):
            for c in range(3 + channels):
                centres[k, c] /= counts[k]

    @_jit
    def _connect(labels, min_size, max_size):
        """Relabel 4-connected components in raster order; components below
        ``min_size`` join the last adjacent labelled component; breadth-first
        growth stops at ``max_size`` (the rest starts a new component)."""
        height, width = labels.shape
        out = np.full((height, width), -1, np.int64)
        queue = np.empty((max(max_size, 1), 2), np.int64)
        step_x = (1, -1, 0, 0)
        step_y = (0, 0, 1, -1)
        new_label = 0
        for y in range(height):
            for x in range(width):
                if out[y, x] >= 0:
                    continue
                label = labels[y, x]
                adjacent = new_label
                out[y, x] = new_label
                queue[0, 0] = y
                queue[0, 1] = x
                size = 1
                visited = 0
                while visited < size < max_size:
                    qy = queue[visited, 0]
                    qx = queue[visited, 1]
                    for i in range(4):
                        ny = qy + step_y[i]
                        nx = qx + step_x[i]
                        if 0 <= nx < width and 0 <= ny < height:
                            if labels[ny, nx] == label and out[ny, nx] == -1:
                                out[ny, nx] = new_label
                                queue[size, 0] = ny
                                queue[size, 1] = nx
                                size += 1
                                if size >= max_size:
                                    break
                            elif out[ny, nx] > -1 and out[ny, nx] != new_label:
                                adjacent = out[ny, nx]
                    visited += 1
                if size < min_size:
                    for i in range(size):
                        out[queue[i, 0], queue[i, 1]] = adjacent
                else:
                    new_label += 1
        return out


def _grid_slices(height: int, width: int, n_segments: int) -> Tuple[slice, ...]:
    from skimage.util import regular_grid
    return regular_grid((1, height, width), n_segments)


def _grid_steps(slices: Tuple[slice, ...]) -> np.ndarray:
    """The grid steps (3,) of scikit-image's regular grid (1 where unsliced)."""
    return np.asarray([float(s.step) if s.step is not None else 1.0 for s in slices])


def _grid_centres(slices: Tuple[slice, ...], height: int, width: int) -> np.ndarray:
    """Initial centres (K, 3) as [z, y, x], in the order scikit-image lists them."""
    axes = [np.arange(n)[s] for n, s in zip((1, height, width), slices)]
    return np.stack([g.ravel() for g in np.meshgrid(*axes, indexing='ij')], axis=-1)


def _features_skimage(image: np.ndarray, sigma: float) -> np.ndarray:
    """[0, 1] scaling, Lab, blur: scikit-image's own functions and arguments."""
    from skimage.color import rgb2lab
    from skimage.filters import gaussian
    from skimage.util import img_as_float
    data = img_as_float(image).astype(np.float64, copy=True)
    low, high = data.min(), data.max()
    data -= low
    if high != low:
        data /= high - low
    data = rgb2lab(data[None])
    if sigma > 0:
        data = gaussian(data, sigma=[sigma, sigma, sigma, 0], mode='reflect')
    return data[0]


def _features_opencv(image: np.ndarray, sigma: float) -> np.ndarray:
    """The same steps in float32 with OpenCV (its sRGB→Lab and a Gaussian with
    scipy's 4σ support and mirrored border): close to, not equal to, the above."""
    import cv2
    data = image.astype(np.float32)
    low, high = float(data.min()), float(data.max())
    data = (data - low) / (high - low) if high != low else data - low
    data = cv2.cvtColor(data, cv2.COLOR_RGB2Lab)
    if sigma > 0:
        radius = int(4.0 * sigma + 0.5)
        data = cv2.GaussianBlur(
            data, (2 * radius + 1, 2 * radius + 1), sigma, borderType=cv2.BORDER_REFLECT)
    return data


def slic_labels(image: np.ndarray,
                n_segments: int = 100,
                compactness: float = 10.0,
                sigma: float = 0.0,
                max_num_iter: int = 10,
                min_size_factor: float = 0.5,
                max_size_factor: float = 3.0,
                preprocess: str = 'skimage',
                parallel: bool = False) -> np.ndarray:
    """SLIC of an RGB uint8 image. With ``preprocess='skimage'`` the labels
    equal ``skimage.segmentation.slic(image, n_segments, compactness,
    max_num_iter, sigma, start_label=0)``; ``'opencv'`` computes the Lab image
    and its blur in float32 with OpenCV (several times faster, labels close
    but not identical).

    Args:
        image: (H, W, 3) uint8 RGB.
        n_segments, compactness, sigma, max_num_iter, min_size_factor,
            max_size_factor: as in scikit-image.
        preprocess: ``'skimage'`` or ``'opencv'``.
        parallel: rows of the assignment step on numba's threads. Off by
            default: measured no faster on two idle cores and slower when they
            are shared; ignored in child processes (data loader or pool
            workers, where the processes are the parallelism and numba's
            OpenMP layer is not fork-safe).

    Returns:
        (H, W) int64 labels from 0.

    Raises:
        ImportError: If numba is not installed.
        ValueError: On a non-(H, W, 3) uint8 image, an empty image,
            compactness <= 0, n_segments < 1 or an unknown ``preprocess``.
    """
    if not _HAVE_NUMBA:
        raise ImportError('slic_labels needs numba (pip install numba, or the '
                          'project\'s "lidar" extra)')
    image = check_rgb_image(image)
    if compactness <= 0:
        raise ValueError(f'compactness must be > 0, got {compactness}')
    if n_segments < 1:
        raise ValueError(f'n_segments must be >= 1, got {n_segments}')
    if preprocess == 'skimage':
        data = _features_skimage(image, sigma)
    elif preprocess == 'opencv':
        data = _features_opencv(image, sigma)
    else:
        raise ValueError(f"preprocess must be 'skimage' or 'opencv', got {preprocess!r}")
    height, width = image.shape[:2]
    slices = _grid_slices(height, width, n_segments)
    centres = _grid_centres(slices, height, width)
    n_centres = centres.shape[0]
    segments = np.ascontiguousarray(
        np.concatenate([centres, np.zeros((n_centres, 3))], axis=-1), np.float64)
    # the reference passes the step as a C float and squares it in float
    step = np.float32(max(_grid_steps(slices)))
    spatial_weight = 1.0 / float(step * step)
    features = np.ascontiguousarray(data * (1.0 / compactness), np.float64)
    # the search windows use the grid of the actual centre count
    win_steps = _grid_steps(_grid_slices(height, width, n_centres))
    step_y, step_x = int(win_steps[1]), int(win_steps[2])
    labels = np.full((height, width), -1, np.int64)
    distance = np.empty((height, width), np.float64)
    # worker processes are the parallelism there
    parallel = bool(parallel) and multiprocessing.parent_process() is None
    assign = _assign_parallel if parallel else _assign_serial
    for _ in range(max_num_iter):
        if not assign(features, segments, step_y, step_x, spatial_weight, labels, distance):
            break
        _update(features, labels, segments)
    size = height * width / n_centres
    return _connect(labels, int(min_size_factor * size), int(max_size_factor * size))


def warm_up() -> float:
    """Compile (or load from numba's cache) the kernels; returns seconds."""
    import time
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    slic_labels(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8), n_segments=4)
    return time.perf_counter() - t0
