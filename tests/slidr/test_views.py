"""Open3D point-cloud I/O and the pairing picture."""
import os

import numpy as np
import pytest

pytest.importorskip('open3d')

from plugins.slidr.views import voxel_preview  # noqa
from plugins.slidr.views import plot_pairings, read_cloud, slot_colours, write_cloud


def test_ply_round_trip_and_voxel_preview(tmp_path):
    xyz = np.random.default_rng(0).uniform(0, 2, (500, 3))
    path = write_cloud(str(tmp_path / 'c.ply'), xyz, slot_colours(np.arange(500) % 7))
    np.testing.assert_allclose(read_cloud(path), xyz, atol=1e-6)
    small = voxel_preview(xyz, size=1.0)
    assert 8 <= len(small) <= 27  # a 2 m cube spans 2-3 one-metre cells per axis
    with pytest.raises(ValueError, match=r'must be \(N, 3\)'):
        write_cloud(str(tmp_path / 'x.ply'), xyz[:, :2])
    with pytest.raises(FileNotFoundError):
        read_cloud(str(tmp_path / 'missing.ply'))


def test_pairing_picture(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    sp = np.repeat(np.arange(6), 10)[None].repeat(40, 0)
    rows, cols = rng.integers(0, 40, 50), rng.integers(0, 60, 50)
    out = plot_pairings(image, sp, rows, cols, rng.normal(size=(50, 3)), sp[rows, cols],
                        str(tmp_path / 'p.png'), 'test')
    assert os.path.getsize(out) > 3000
