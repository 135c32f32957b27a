"""The synthetic nuScenes tree loads in the official devkit, and the plugin's
projection matches the devkit's own on it."""
import numpy as np
import pytest

nuscenes = pytest.importorskip('nuscenes')

from plugins.slidr.functional import lidar_to_camera, project_points  # noqa: E402
from plugins.slidr.nuscenes_synth import CAMERAS, make_nuscenes_synthetic  # noqa: E402


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
    assert {nusc.lidarseg_idx2name_mapping[i] for i in np.unique(labels)} <= {
        'flat.driveable_surface', 'vehicle.car', 'static.manmade', 'static.vegetation'}


@pytest.mark.parametrize('camera', ['CAM_FRONT', 'CAM_BACK_LEFT'])
def test_projection_matches_the_devkit(nusc, camera):
    sample = nusc.sample[1]
    lidar = nusc.get('sample_data', sample['data']['LIDAR_TOP'])
    cam = nusc.get('sample_data', sample['data'][camera])
    pts_dev, depth_dev, _ = nusc.explorer.map_pointcloud_to_image(lidar['token'], cam['token'])
    points = np.fromfile(f"{nusc.dataroot}/{lidar['filename']}", np.float32).reshape(-1, 5)
    records = (nusc.get('calibrated_sensor', lidar['calibrated_sensor_token']),
               nusc.get('ego_pose', lidar['ego_pose_token']),
               nusc.get('ego_pose', cam['ego_pose_token']),
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
    assert np.abs(col[pos] - np.round(pts_dev[0])).max() <= 1
    assert np.abs(row[pos] - np.round(pts_dev[1])).max() <= 1
    assert (0 <= row).all() and (row <= h - 1).all() and (0 <= col).all() and (col <= w - 1).all()
