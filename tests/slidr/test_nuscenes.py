"""The synthetic nuScenes tree loads in the official devkit, and the plugin's
projection matches the devkit's own on it."""
import numpy as np
import pytest

nuscenes = pytest.importorskip('nuscenes')

from plugins.slidr.datasets.lidarseg import CAMERAS
from plugins.slidr.geometry import lidar_to_camera, project_points
from plugins.testing.nuscenes import make_nuscenes_synthetic


@pytest.fixture(scope='module')
def nusc(tmp_path_factory):
    from nuscenes.nuscenes import NuScenes
    root = make_nuscenes_synthetic(str(tmp_path_factory.mktemp('nuscenes')))
    return NuScenes('v1.0-mini', root, verbose=False)


def test_devkit_loads_the_tree_unmodified(nusc):
    from nuscenes.utils.splits import create_splits_scenes
    assert len(nusc.sample) == 4 and len(nusc.lidarseg) == 4
    splits = create_splits_scenes()
    names = {s['name'] for s in nusc.scene}
    assert names <= set(splits['mini_train']) | set(splits['mini_val'])
    sample = nusc.sample[0]
    assert set(sample['data']) == {'LIDAR_TOP', *CAMERAS}
    lidar = nusc.get('sample_data', sample['data']['LIDAR_TOP'])
    points = np.fromfile(f"{nusc.dataroot}/{lidar['filename']}", np.float32).reshape(-1, 5)
    labels = np.fromfile(f"{nusc.dataroot}/{nusc.get('lidarseg', lidar['token'])['filename']}",
                         np.uint8)
    assert labels.shape[0] == points.shape[0] > 1000
    assert {nusc.lidarseg_idx2name_mapping[i]
            for i in np.unique(labels)
            } <= {'flat.driveable_surface', 'vehicle.car', 'static.manmade', 'static.vegetation'}


@pytest.mark.parametrize('camera', ['CAM_FRONT', 'CAM_BACK_LEFT'])
def test_projection_matches_the_devkit(nusc, camera):
    sample = nusc.sample[1]
    lidar = nusc.get('sample_data', sample['data']['LIDAR_TOP'])
    cam = nusc.get('sample_data', sample['data'][camera])
    pts_dev, depth_dev, _ = nusc.explorer.map_pointcloud_to_image(lidar['token'], cam['token'])
    points = np.fromfile(f"{nusc.dataroot}/{lidar['filename']}", np.float32).reshape(-1, 5)
    records = (nusc.get('calibrated_sensor', lidar['calibrated_sensor_token']),
               nusc.get('ego_pose',
                        lidar['ego_pose_token']), nusc.get('ego_pose', cam['ego_pose_token']),
               nusc.get('calibrated_sensor', cam['calibrated_sensor_token']))
    p = lidar_to_camera(points, *records)
    k = np.array(records[3]['camera_intrinsic'])
    uv = (k @ p.T)[:2] / p[:, 2]
    w, h = cam['width'], cam['height']
    # the devkit keeps 1 < u < W-1 (a margin of 1 px); the method keeps 0 < u < W-1
    dev_mask = (p[:, 2] > 1) & (uv[0] > 1) & (uv[0] < w - 1) & (uv[1] > 1) & (uv[1] < h - 1)
    assert dev_mask.sum() == pts_dev.shape[1] > 100
    np.testing.assert_allclose(uv[:, dev_mask], pts_dev[:2], atol=1e-3)
    np.testing.assert_allclose(p[dev_mask, 2], depth_dev, rtol=1e-5)
    index, row, col = project_points(points, *records, width=w, height=h)
    assert set(np.nonzero(dev_mask)[0]) <= set(index)
    pos = np.searchsorted(index, np.nonzero(dev_mask)[0])
    assert (col[pos] == np.round(pts_dev[0])).all() and (row[pos] == np.round(pts_dev[1])).all()
    assert (0 <= row).all() and (row <= h - 1).all() and (0 <= col).all() and (col <= w - 1).all()


def test_full_resolution_projection_is_the_devkits_pixel_for_pixel(tmp_path):
    """1600x900 cameras: every point the devkit keeps lands on the pixel that
    rounding the devkit's own coordinates gives (float64 projection)."""
    from nuscenes.nuscenes import NuScenes
    root = make_nuscenes_synthetic(
        str(tmp_path / 'full'), samples_per_scene=1, width=1600, height=900, seed=3)
    nusc = NuScenes('v1.0-mini', root, verbose=False)
    checked = 0
    for sample in nusc.sample:
        lidar = nusc.get('sample_data', sample['data']['LIDAR_TOP'])
        points = np.fromfile(f"{nusc.dataroot}/{lidar['filename']}", np.float32).reshape(-1, 5)
        for camera in CAMERAS:
            cam = nusc.get('sample_data', sample['data'][camera])
            pts_dev, _, _ = nusc.explorer.map_pointcloud_to_image(lidar['token'], cam['token'])
            records = (nusc.get('calibrated_sensor', lidar['calibrated_sensor_token']),
                       nusc.get('ego_pose',
                                lidar['ego_pose_token']), nusc.get('ego_pose',
                                                                   cam['ego_pose_token']),
                       nusc.get('calibrated_sensor', cam['calibrated_sensor_token']))
            index, row, col = project_points(points, *records, width=1600, height=900)
            got = dict(zip(index.tolist(), zip(row.tolist(), col.tolist())))
            p = lidar_to_camera(points, *records)
            k = np.array(records[3]['camera_intrinsic'])
            uv = (k @ p.T.astype(np.float64))[:2] / p[:, 2]
            kept = np.nonzero((p[:, 2] > 1) & (uv[0] > 1) & (uv[0] < 1599) & (uv[1] > 1)
                              & (uv[1] < 899))[0]
            assert len(kept) == pts_dev.shape[1]
            want = list(
                zip(
                    np.round(pts_dev[1]).astype(int).tolist(),
                    np.round(pts_dev[0]).astype(int).tolist()))
            assert [got[i] for i in kept.tolist()] == want, camera
            checked += len(kept)
    assert checked > 1000


def test_projection_step_equals_view_points_on_200k_points():
    """The pixel step alone, on 200k float32 camera-frame points at 1600x900:
    the same pixels as rounding the devkit's view_points (a float32 product
    moved a few of them by one pixel)."""
    from nuscenes.utils.geometry_utils import view_points

    from plugins.slidr.geometry import project_to_image
    rng = np.random.default_rng(0)
    n = 200_000
    depth = rng.uniform(1.5, 60.0, n)
    k = np.array([[1266.417, 0.0, 816.267], [0.0, 1266.417, 491.507], [0.0, 0.0, 1.0]])
    u, v = rng.uniform(-50, 1650, n), rng.uniform(-50, 950, n)
    cam = np.stack([(u - k[0, 2]) * depth / k[0, 0], (v - k[1, 2]) * depth / k[1, 1], depth],
                   1).astype(np.float32)
    index, row, col = project_to_image(cam, k, 1600, 900)
    dev = view_points(cam.T, k, normalize=True)
    keep = (cam[:, 2] > 1) & (dev[0] > 0) & (dev[0] < 1599) & (dev[1] > 0) & (dev[1] < 899)
    assert (index == np.nonzero(keep)[0]).all() and len(index) > 150_000
    assert (row == np.round(dev[1, keep])).all() and (col == np.round(dev[0, keep])).all()
