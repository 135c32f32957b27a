"""A small nuScenes(-lidarseg) tree that the official devkit loads unmodified.

Scenes drive past boxes ("cars"), poles ("manmade") and bushes ("vegetation")
on a ground plane; a 32-beam lidar samples them (``.pcd.bin``, float32 ×5:
x, y, z, intensity, ring) with per-point lidarseg labels, and six cameras
(the nuScenes rig directions) see images rendered from the labelled points,
so image regions line up with the 3D objects. Tables: the 13 mandatory ones
plus ``lidarseg.json``, with the 32 official fine class names.
"""
from __future__ import annotations

import json
import math
import os
import uuid
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..slidr.datasets.lidarseg import CAMERAS, FINE_CLASSES

__all__ = ['make_nuscenes_synthetic', 'road_scene', 'ray_cast_scan', 'make_demo', 'FORMAT']

#: the format's name in ``tools/data/make_demo_data.py`` and under ``data/demo/``
FORMAT = 'nuscenes'

_YAW = {
    'CAM_FRONT': 0.0,
    'CAM_FRONT_RIGHT': -55.0,
    'CAM_BACK_RIGHT': -110.0,
    'CAM_BACK': 180.0,
    'CAM_BACK_LEFT': 110.0,
    'CAM_FRONT_LEFT': 55.0
}
_GROUND, _CAR, _MANMADE, _VEG = (
    FINE_CLASSES.index(n)
    for n in ('flat.driveable_surface', 'vehicle.car', 'static.manmade', 'static.vegetation'))
_COLOURS = {
    _GROUND: (90, 90, 95),
    _CAR: (200, 40, 40),
    _MANMADE: (60, 60, 200),
    _VEG: (40, 160, 60)
}


def _token(rng: np.random.Generator) -> str:
    return uuid.UUID(bytes=rng.bytes(16), version=4).hex


def _quat_z(deg: float) -> List[float]:
    a = math.radians(deg) / 2
    return [math.cos(a), 0.0, 0.0, math.sin(a)]


def _quat_mul(a: Sequence[float], b: Sequence[float]) -> List[float]:
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return [
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2
    ]


# camera axes (x right, y down, z forward) relative to a vehicle-style frame
# (x forward, y left, z up): a fixed rotation, then the camera's yaw
_CAM_BASE = [0.5, -0.5, 0.5, -0.5]


def road_scene(rng: np.random.Generator) -> List[Tuple[int, np.ndarray, np.ndarray]]:
    """Axis-aligned boxes ``(label, min xyz, max xyz)`` along a straight road."""
    objects = []
    for x in np.arange(-30, 120, 9.0):
        for side in (-1, 1):
            kind = rng.choice([_CAR, _MANMADE, _VEG], p=[0.4, 0.3, 0.3])
            y = side * rng.uniform(5, 9)
            if kind == _CAR:
                size = np.array([4.2, 1.8, 1.5])
            elif kind == _MANMADE:
                size = np.array([0.5, 0.5, 4.0])
            else:
                size = np.array([2.5, 2.5, 2.0])
            lo = np.array([x + rng.uniform(-2, 2), y, -1.8])
            objects.append((int(kind), lo, lo + size))
    return objects


def ray_cast_scan(ego_xy: np.ndarray,
                  objects,
                  rng: np.random.Generator,
                  beams: int = 32,
                  steps: int = 360) -> Tuple[np.ndarray, np.ndarray]:
    """Ray-cast a ``beams``-beam lidar at height 1.8 m (ego frame ~ lidar frame),
    ``steps`` azimuths per turn (nuScenes' 32-beam sensor gives ~1,084).

    Returns:
        tuple: ``cloud (N, 5)`` float32 x, y, z (world frame), intensity, ring
        and ``labels (N,)`` uint8 fine class ids.
    """
    elev = np.radians(np.linspace(-30.0, 10.0, beams))
    azim = np.radians(np.arange(steps) * 360.0 / steps)
    el, az = np.meshgrid(elev, azim, indexing='ij')
    d = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1).reshape(-1, 3)
    ring = np.repeat(np.arange(beams), steps)
    origin = np.array([ego_xy[0], ego_xy[1], 0.0])
    t_best = np.full(d.shape[0], np.inf)
    label = np.full(d.shape[0], -1)
    with np.errstate(divide='ignore', invalid='ignore'):
        t_ground = np.where(d[:, 2] < 0, -1.8 / d[:, 2], np.inf)
    hit = t_ground < 60
    t_best[hit], label[hit] = t_ground[hit], _GROUND
    for kind, lo, hi in objects:
        with np.errstate(divide='ignore', invalid='ignore'):
            t1 = (lo - origin) / d
            t2 = (hi - origin) / d
        tmin = np.nanmax(np.minimum(t1, t2), 1)
        tmax = np.nanmin(np.maximum(t1, t2), 1)
        ok = (tmax >= tmin) & (tmin > 0.5) & (tmin < t_best)
        t_best[ok], label[ok] = tmin[ok], kind
    keep = np.isfinite(t_best) & (label >= 0)
    pts = d[keep] * t_best[keep, None] + rng.normal(0, 0.02, (int(keep.sum()), 3))
    intensity = np.where(label[keep] == _GROUND, 20.0, 80.0) + rng.uniform(0, 40, int(keep.sum()))
    cloud = np.concatenate([pts, intensity[:, None], ring[keep, None]], 1).astype(np.float32)
    return cloud, label[keep].astype(np.uint8)


def _render(points_cam: np.ndarray, labels: np.ndarray, k: np.ndarray, width: int, height: int,
            rng: np.random.Generator) -> np.ndarray:
    """Paint each visible labelled point as a disc in its class colour (far to near)."""
    import cv2
    image = np.zeros((height, width, 3), np.float32) + np.array([150, 180, 210])  # sky
    image[height // 2:] = (90, 90, 95)
    z = points_cam[:, 2]
    front = z > 0.5
    uv = (k @ points_cam[front].T).T
    uv = uv[:, :2] / uv[:, 2:3]
    order = np.argsort(-z[front])
    for i in order:
        u, v = int(uv[i, 0]), int(uv[i, 1])
        if 0 <= u < width and 0 <= v < height:
            r = max(1, int(60.0 / z[front][i]))
            cv2.circle(image, (u, v), r, _COLOURS[int(labels[front][i])], -1)
    image = cv2.GaussianBlur(image, (0, 0), 1.5) + rng.normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_nuscenes_synthetic(root: str,
                            version: str = 'v1.0-mini',
                            scenes: Sequence[str] = ('scene-0061', 'scene-0103'),
                            samples_per_scene: int = 2,
                            width: int = 400,
                            height: int = 225,
                            seed: int = 0) -> str:
    """Write the tree; returns ``root``.

    Scene names must belong to the devkit's splits (mini: ``scene-0061`` is
    ``mini_train``, ``scene-0103`` is ``mini_val``).

    Raises:
        ValueError: On no scenes, no samples or a tiny image size.
    """
    import cv2

    from ..slidr.geometry import lidar_to_camera
    if not scenes or samples_per_scene < 1 or width < 32 or height < 32:
        raise ValueError('need at least one scene, one sample and images of >= 32 px')
    rng = np.random.default_rng(seed)
    tables: Dict[str, list] = {
        n: []
        for n in ('category', 'attribute', 'visibility', 'instance', 'sensor', 'calibrated_sensor',
                  'ego_pose', 'log', 'scene', 'sample', 'sample_data', 'sample_annotation', 'map',
                  'lidarseg')
    }
    for i, name in enumerate(FINE_CLASSES):
        tables['category'].append({
            'token': _token(rng),
            'name': name,
            'description': name,
            'index': i
        })
    sensors = {}
    for channel in ('LIDAR_TOP', ) + CAMERAS:
        sensors[channel] = _token(rng)
        tables['sensor'].append({
            'token': sensors[channel],
            'channel': channel,
            'modality': 'lidar' if channel == 'LIDAR_TOP' else 'camera'
        })
    f = 0.6 * width
    k = [[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]]
    os.makedirs(os.path.join(root, 'maps'), exist_ok=True)
    map_png = os.path.join('maps', 'synthetic_map.png')
    cv2.imwrite(os.path.join(root, map_png), np.full((20, 20), 255, np.uint8))
    for sub in ['samples/LIDAR_TOP', f'lidarseg/{version}', version] + \
            [f'samples/{c}' for c in CAMERAS]:
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    map_logs = []
    timestamp = 1_532_402_927_000_000
    for name in scenes:
        log = _token(rng)
        map_logs.append(log)
        logfile = f'n015-synthetic-{name}'
        tables['log'].append({
            'token': log,
            'logfile': logfile,
            'vehicle': 'n015',
            'date_captured': '2018-07-24',
            'location': 'singapore-onenorth'
        })
        calib = {}
        calib['LIDAR_TOP'] = {
            'token': _token(rng),
            'sensor_token': sensors['LIDAR_TOP'],
            'translation': [0.9, 0.0, 1.8],
            'rotation': _quat_z(-90.0),
            'camera_intrinsic': []
        }
        for c in CAMERAS:
            calib[c] = {
                'token':
                _token(rng),
                'sensor_token':
                sensors[c],
                'translation':
                [1.5 * math.cos(math.radians(_YAW[c])), 1.5 * math.sin(math.radians(_YAW[c])), 1.5],
                'rotation':
                _quat_mul(_quat_z(_YAW[c]), _CAM_BASE),
                'camera_intrinsic':
                k
            }
        tables['calibrated_sensor'].extend(calib.values())
        objects = road_scene(rng)
        scene_token = _token(rng)
        sample_tokens = [_token(rng) for _ in range(samples_per_scene)]
        prev_sd = {c: '' for c in ('LIDAR_TOP', ) + CAMERAS}
        sd_tokens = {c: [_token(rng) for _ in sample_tokens] for c in prev_sd}
        for s, sample in enumerate(sample_tokens):
            ego_x = 10.0 * s + rng.uniform(0, 2)
            tables['sample'].append({
                'token':
                sample,
                'timestamp':
                timestamp,
                'scene_token':
                scene_token,
                'prev':
                sample_tokens[s - 1] if s else '',
                'next':
                sample_tokens[s + 1] if s + 1 < len(sample_tokens) else ''
            })
            heading = rng.uniform(-3, 3)
            lidar_pose = {
                'token': _token(rng),
                'timestamp': timestamp,
                'translation': [ego_x, 0.2, 0.0],
                'rotation': _quat_z(heading)
            }
            tables['ego_pose'].append(lidar_pose)
            # the lidar frame is the ego frame rotated by -90° about z, lifted 1.8 m:
            # cast in world coordinates around the lidar, then express in the lidar frame
            world_cloud, labels = ray_cast_scan(np.array([ego_x + 0.9, 0.2]), objects, rng)
            r_l = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
            cloud = world_cloud.copy()
            local = world_cloud[:, :3] - np.array([ego_x + 0.9, 0.2, 0.0])
            yaw = math.radians(heading)
            rot = np.array([[math.cos(yaw), math.sin(yaw), 0], [-math.sin(yaw),
                                                                math.cos(yaw), 0], [0, 0, 1]])
            cloud[:, :3] = (r_l @ (rot @ local.T)).T
            base = f'{logfile}__LIDAR_TOP__{timestamp}'
            lidar_file = f'samples/LIDAR_TOP/{base}.pcd.bin'
            cloud.astype(np.float32).tofile(os.path.join(root, lidar_file))
            lidar_sd = sd_tokens['LIDAR_TOP'][s]
            tables['sample_data'].append({
                'token':
                lidar_sd,
                'sample_token':
                sample,
                'ego_pose_token':
                lidar_pose['token'],
                'calibrated_sensor_token':
                calib['LIDAR_TOP']['token'],
                'filename':
                lidar_file,
                'fileformat':
                'pcd',
                'width':
                0,
                'height':
                0,
                'timestamp':
                timestamp,
                'is_key_frame':
                True,
                'prev':
                prev_sd['LIDAR_TOP'],
                'next':
                sd_tokens['LIDAR_TOP'][s + 1] if s + 1 < len(sample_tokens) else ''
            })
            prev_sd['LIDAR_TOP'] = lidar_sd
            label_file = f'lidarseg/{version}/{lidar_sd}_lidarseg.bin'
            labels.astype(np.uint8).tofile(os.path.join(root, label_file))
            tables['lidarseg'].append({
                'token': lidar_sd,
                'sample_data_token': lidar_sd,
                'filename': label_file
            })
            for c in CAMERAS:
                cam_ts = timestamp + 10_000
                cam_pose = {
                    'token': _token(rng),
                    'timestamp': cam_ts,
                    'translation': [ego_x + 0.1, 0.2, 0.0],
                    'rotation': _quat_z(heading)
                }
                tables['ego_pose'].append(cam_pose)
                pts_cam = lidar_to_camera(cloud, calib['LIDAR_TOP'], lidar_pose, cam_pose, calib[c])
                image = _render(pts_cam, labels, np.array(k), width, height, rng)
                fname = f'samples/{c}/{logfile}__{c}__{cam_ts}.jpg'
                cv2.imwrite(os.path.join(root, fname), image[..., ::-1])
                token = sd_tokens[c][s]
                tables['sample_data'].append({
                    'token':
                    token,
                    'sample_token':
                    sample,
                    'ego_pose_token':
                    cam_pose['token'],
                    'calibrated_sensor_token':
                    calib[c]['token'],
                    'filename':
                    fname,
                    'fileformat':
                    'jpg',
                    'width':
                    width,
                    'height':
                    height,
                    'timestamp':
                    cam_ts,
                    'is_key_frame':
                    True,
                    'prev':
                    prev_sd[c],
                    'next':
                    sd_tokens[c][s + 1] if s + 1 < len(sample_tokens) else ''
                })
                prev_sd[c] = token
            timestamp += 500_000
        tables['scene'].append({
            'token': scene_token,
            'name': name,
            'description': 'synthetic',
            'log_token': log,
            'nbr_samples': samples_per_scene,
            'first_sample_token': sample_tokens[0],
            'last_sample_token': sample_tokens[-1]
        })
    tables['map'].append({
        'token': _token(rng),
        'log_tokens': map_logs,
        'category': 'semantic_prior',
        'filename': map_png
    })
    for name, rows in tables.items():
        with open(os.path.join(root, version, f'{name}.json'), 'w') as f:
            json.dump(rows, f)
    return root


def make_demo(out: str, seed: int = 0, small: bool = False) -> str:
    """The demo's ``v1.0-mini`` tree: 4 keyframes a scene (``small``: 1)."""
    return make_nuscenes_synthetic(out, samples_per_scene=1 if small else 4, seed=seed)
