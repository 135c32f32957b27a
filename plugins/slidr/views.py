"""Point-cloud I/O and report views for SLidR (Open3D for clouds, matplotlib for
pictures; both imported on use)."""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

__all__ = ['write_cloud', 'read_cloud', 'voxel_preview', 'slot_colours', 'plot_pairings']


def write_cloud(path: str, xyz: np.ndarray, colours: Optional[np.ndarray] = None) -> str:
    """Write ``(N, 3)`` points (and ``(N, 3)`` colours in [0, 1]) as PLY/PCD.

    Raises:
        ValueError: On mismatched shapes.
        OSError: If Open3D cannot write the file.
    """
    import open3d as o3d
    xyz = np.asarray(xyz, np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f'points must be (N, 3), got {xyz.shape}')
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz))
    if colours is not None:
        colours = np.asarray(colours, np.float64)
        if colours.shape != xyz.shape:
            raise ValueError(f'colours {colours.shape} must match points {xyz.shape}')
        cloud.colors = o3d.utility.Vector3dVector(np.clip(colours, 0, 1))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not o3d.io.write_point_cloud(path, cloud):
        raise OSError(f'Open3D could not write {path}')
    return path


def read_cloud(path: str) -> np.ndarray:
    """``(N, 3)`` points of a PLY/PCD/XYZ file.

    Raises:
        FileNotFoundError: If the file is missing.
    """
    import open3d as o3d
    if not os.path.isfile(path):
        raise FileNotFoundError(f'point cloud {path} does not exist')
    return np.asarray(o3d.io.read_point_cloud(path).points)


def voxel_preview(xyz: np.ndarray, size: float = 0.5) -> np.ndarray:
    """Cartesian voxel down-sampling (Open3D averages the points of a cell) for
    quick looks; SLidR's own voxels are cylindrical (``cylindrical_voxelize``)."""
    import open3d as o3d
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(xyz, np.float64)))
    return np.asarray(cloud.voxel_down_sample(size).points)


def slot_colours(slots: np.ndarray, seed: int = 0) -> np.ndarray:
    """A stable random colour per slot id, ``(N, 3)`` in [0, 1]."""
    rng = np.random.default_rng(seed)
    table = rng.uniform(0.15, 1.0, (int(slots.max()) + 1 if slots.size else 1, 3))
    return table[slots]


def plot_pairings(image: np.ndarray,
                  superpixels: np.ndarray,
                  rows: np.ndarray,
                  cols: np.ndarray,
                  xyz: np.ndarray,
                  point_slots: np.ndarray,
                  out_png: str,
                  title: str = '') -> str:
    """Two panels: the image with superpixel boundaries and its paired points
    coloured by superpixel; the bird's-eye view of those points in the same
    colours (the "superpoints")."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    edges = np.zeros(superpixels.shape, bool)
    edges[:, 1:] |= superpixels[:, 1:] != superpixels[:, :-1]
    edges[1:] |= superpixels[1:] != superpixels[:-1]
    shown = image.copy()
    shown[edges] = (255, 255, 255)
    colours = slot_colours(point_slots)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={'width_ratios': [1.6, 1]})
    axes[0].imshow(shown)
    axes[0].scatter(cols, rows, s=3, c=colours, edgecolors='none')
    axes[0].set_axis_off()
    axes[0].set_title('superpixels and paired points')
    axes[1].scatter(xyz[:, 0], xyz[:, 1], s=2, c=colours, edgecolors='none')
    axes[1].set_aspect('equal')
    axes[1].set_title('the same points, bird\'s-eye view')
    axes[1].set_xlabel('x (m)')
    axes[1].set_ylabel('y (m)')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
