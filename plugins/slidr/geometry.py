"""Lidar and camera geometry on plain arrays: nuScenes pose records, lidar →
camera projection, and the cylindrical voxelisation of the student's input."""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = [
    'quaternion_to_matrix', 'lidar_to_camera', 'project_to_image', 'project_points',
    'cylindrical_voxelize'
]


def quaternion_to_matrix(q: Sequence[float]) -> np.ndarray:
    """3×3 rotation (float64) of a unit quaternion ``(w, x, y, z)`` (normalised
    first).

    Raises:
        ValueError: On a quaternion that is not 4 numbers or has zero norm.
    """
    q = np.asarray(q, dtype=np.float64).ravel()
    if q.size != 4 or not np.isfinite(q).all() or np.linalg.norm(q) == 0:
        raise ValueError(f'rotation must be a non-zero quaternion (w, x, y, z), got {q.tolist()}')
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _pose(record: dict, name: str) -> Tuple[np.ndarray, np.ndarray]:
    missing = [k for k in ('rotation', 'translation') if k not in record]
    if missing:
        raise KeyError(f'{name} record lacks {missing}')
    return quaternion_to_matrix(record['rotation']), np.asarray(record['translation'], np.float64)


def lidar_to_camera(points: np.ndarray,
                    lidar_calib: dict,
                    lidar_pose: dict,
                    cam_pose: dict,
                    cam_calib: dict,
                    float32: bool = True) -> np.ndarray:
    """Lidar-frame xyz → camera-frame xyz through the nuScenes chain.

    lidar → ego (lidar time) → global → ego (camera time) → camera, each record
    ``{'rotation': (w, x, y, z), 'translation': (3,)}``. With ``float32`` the
    devkit's numerics are emulated: rotations in float64 stored back to
    float32, float32 translations.

    Args:
        points (np.ndarray): ``(N, ≥3)`` lidar points (xyz first).

    Returns:
        np.ndarray: ``(N, 3)`` camera-frame points (x right, y down, z forward).

    Raises:
        KeyError: On a record without rotation/translation (names it).
        ValueError: On bad point arrays.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise ValueError(f'points must be (N, >=3), got {pts.shape}')
    dtype = np.float32 if float32 else np.float64
    p = pts[:, :3].astype(dtype).T  # (3, N)

    def rotate(r, x):
        return (r @ x.astype(np.float64)).astype(dtype)

    r, t = _pose(lidar_calib, 'lidar calibrated_sensor')
    p = rotate(r, p) + t.astype(dtype)[:, None]
    r, t = _pose(lidar_pose, 'lidar ego_pose')
    p = rotate(r, p) + t.astype(dtype)[:, None]
    r, t = _pose(cam_pose, 'camera ego_pose')
    p = rotate(r.T, p - t.astype(dtype)[:, None])
    r, t = _pose(cam_calib, 'camera calibrated_sensor')
    p = rotate(r.T, p - t.astype(dtype)[:, None])
    return p.T


def project_to_image(points_cam: np.ndarray,
                     intrinsic,
                     width: int,
                     height: int,
                     min_depth: float = 1.0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels of camera-frame points: keep ``d > min_depth``, ``0 < u < W−1``,
    ``0 < v < H−1`` (strict); pixel = ``(round(v), round(u))``, half to even.

    Returns:
        tuple: ``(index (M,), row (M,), col (M,))`` int64 — kept point indices
        and their pixels.

    Raises:
        ValueError: On a bad intrinsic matrix or image size.
    """
    k = np.asarray(intrinsic, dtype=np.float64)
    if k.shape != (3, 3):
        raise ValueError(f'camera_intrinsic must be 3x3, got shape {k.shape} (a lidar '
                         f'record has an empty intrinsic)')
    if width < 2 or height < 2:
        raise ValueError(f'bad image size {width}x{height}')
    # in float64 whatever the points' precision, as the devkit's view_points:
    # a float32 product moves a few points per million across a pixel boundary
    p = np.asarray(points_cam).astype(np.float64)
    uvw = k @ p.T
    with np.errstate(divide='ignore', invalid='ignore'):
        u = uvw[0] / uvw[2]
        v = uvw[1] / uvw[2]
    depth = p[:, 2]
    keep = (depth > min_depth) & (u > 0) & (u < width - 1) & (v > 0) & (v < height - 1)
    index = np.nonzero(keep)[0]
    return index, np.round(v[keep]).astype(np.int64), np.round(u[keep]).astype(np.int64)


def project_points(points: np.ndarray,
                   lidar_calib: dict,
                   lidar_pose: dict,
                   cam_pose: dict,
                   cam_calib: dict,
                   width: int,
                   height: int,
                   min_depth: float = 1.0,
                   float32: bool = True) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`lidar_to_camera` then :func:`project_to_image`; the intrinsic is
    ``cam_calib['camera_intrinsic']``.

    Raises:
        KeyError: If ``cam_calib`` has no ``camera_intrinsic``.
    """
    if 'camera_intrinsic' not in cam_calib:
        raise KeyError('camera calibrated_sensor record lacks camera_intrinsic')
    cam = lidar_to_camera(points, lidar_calib, lidar_pose, cam_pose, cam_calib, float32)
    return project_to_image(cam, cam_calib['camera_intrinsic'], width, height, min_depth)


def cylindrical_voxelize(xyz: Tensor,
                         size: float = 0.1,
                         angle_deg: float = 1.0) -> Tuple[Tensor, Tensor, Tensor]:
    """Cylindrical cells ``(⌊ρ/size⌋, ⌊φ°/angle⌋, ⌊z/size⌋)``, one voxel per
    unique cell (sorted), represented by its first point.

    Args:
        xyz (Tensor): ``(N, 3)``.

    Returns:
        tuple: ``coords (V, 3)`` long, ``inverse (N,)`` point → voxel,
        ``representative (V,)`` the first point of each voxel.

    Raises:
        ValueError: On a non-(N, 3) input, non-positive sizes, or non-finite
            coordinates (the cell of a NaN or inf point is undefined; the
            message counts them and names the first row).
    """
    if xyz.dim() != 2 or xyz.shape[1] < 3:
        raise ValueError(f'xyz must be (N, 3), got {tuple(xyz.shape)}')
    if size <= 0 or angle_deg <= 0:
        raise ValueError(f'voxel size and angle must be > 0, got {size}, {angle_deg}')
    finite = torch.isfinite(xyz[:, :3]).all(1)
    if not bool(finite.all()):
        bad = (~finite).nonzero().flatten()
        raise ValueError(f'{bad.numel()} of {xyz.shape[0]} points have non-finite '
                         f'coordinates, e.g. row {int(bad[0])}: {xyz[bad[0], :3].tolist()}; '
                         f'drop them before voxelizing')
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    rho = torch.sqrt(x * x + y * y) / size
    phi = torch.rad2deg(torch.atan2(y, x)) / angle_deg
    cells = torch.stack([rho, phi, z / size], 1).floor().long()
    if cells.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.long, device=xyz.device)
        return cells, empty, empty
    coords, inverse = torch.unique(cells, dim=0, return_inverse=True)
    order = torch.arange(cells.shape[0], device=xyz.device)
    first = torch.full((coords.shape[0], ), cells.shape[0], dtype=torch.long, device=xyz.device)
    first = first.scatter_reduce(0, inverse, order, reduce='amin')
    return coords, inverse, first
