"""nuScenes facts: the camera rig, the lidarseg classes, and label fractions."""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

__all__ = [
    'NUSCENES_CLASSES', 'CAMERAS', 'FINE_CLASSES', 'fine_to_coarse', 'keep_every_kth_scene',
    'scene_keyframes'
]

#: the six cameras of a nuScenes sample
CAMERAS = ('CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_BACK_RIGHT', 'CAM_BACK', 'CAM_BACK_LEFT',
           'CAM_FRONT_LEFT')
#: the 32 fine lidarseg class names, in the index order of nuScenes' ``category.json``
FINE_CLASSES = ('noise', 'animal', 'human.pedestrian.adult', 'human.pedestrian.child',
                'human.pedestrian.construction_worker', 'human.pedestrian.personal_mobility',
                'human.pedestrian.police_officer', 'human.pedestrian.stroller',
                'human.pedestrian.wheelchair', 'movable_object.barrier', 'movable_object.debris',
                'movable_object.pushable_pullable', 'movable_object.trafficcone',
                'static_object.bicycle_rack', 'vehicle.bicycle', 'vehicle.bus.bendy',
                'vehicle.bus.rigid', 'vehicle.car', 'vehicle.construction',
                'vehicle.emergency.ambulance', 'vehicle.emergency.police', 'vehicle.motorcycle',
                'vehicle.trailer', 'vehicle.truck', 'flat.driveable_surface', 'flat.other',
                'flat.sidewalk', 'flat.terrain', 'static.manmade', 'static.other',
                'static.vegetation', 'vehicle.ego')

NUSCENES_CLASSES = ('ignore', 'barrier', 'bicycle', 'bus', 'car', 'construction_vehicle',
                    'motorcycle', 'pedestrian', 'traffic_cone', 'trailer', 'truck',
                    'driveable_surface', 'other_flat', 'sidewalk', 'terrain', 'manmade',
                    'vegetation')

_FINE = {
    'movable_object.barrier': 1,
    'vehicle.bicycle': 2,
    'vehicle.bus.bendy': 3,
    'vehicle.bus.rigid': 3,
    'vehicle.car': 4,
    'vehicle.construction': 5,
    'vehicle.motorcycle': 6,
    'human.pedestrian.adult': 7,
    'human.pedestrian.child': 7,
    'human.pedestrian.construction_worker': 7,
    'human.pedestrian.police_officer': 7,
    'movable_object.trafficcone': 8,
    'vehicle.trailer': 9,
    'vehicle.truck': 10,
    'flat.driveable_surface': 11,
    'flat.other': 12,
    'flat.sidewalk': 13,
    'flat.terrain': 14,
    'static.manmade': 15,
    'static.vegetation': 16
}


def fine_to_coarse(idx2name: Dict[int, str]) -> np.ndarray:
    """Lookup table fine lidarseg index (0–31) → the 16 evaluation classes
    (0 = ignore: noise, animal, personal mobility, stroller, wheelchair,
    debris, pushable/pullable, bicycle rack, emergency vehicles, static.other,
    ego)."""
    table = np.zeros(max(idx2name) + 1, np.uint8)
    for idx, name in idx2name.items():
        table[idx] = _FINE.get(name, 0)
    return table


def keep_every_kth_scene(scene_names: Sequence[str], k: int) -> List[str]:
    """The reference's label fraction: walk the scenes in table order and keep
    a scene when its running count is divisible by ``k`` (k = 100: 1 %).

    Raises:
        ValueError: On ``k < 1``.
    """
    if k < 1:
        raise ValueError(f'k must be >= 1, got {k}')
    return [name for i, name in enumerate(scene_names) if i % k == 0]


def scene_keyframes(nusc, scene_names) -> List[str]:
    """Sample tokens of the named scenes' keyframes, scenes in the table's
    order and each scene's keyframes in time order.

    Args:
        nusc: A devkit ``NuScenes`` (its ``scene`` table and ``get``).
        scene_names (Iterable[str]): Scene names to keep.
    """
    names = set(scene_names)
    tokens: List[str] = []
    for scene in nusc.scene:
        if scene['name'] not in names:
            continue
        token = scene['first_sample_token']
        while token:
            sample = nusc.get('sample', token)
            tokens.append(sample['token'])
            token = sample['next']
    return tokens
