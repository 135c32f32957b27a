"""nuScenes keyframes for SLidR pre-training, read with the official devkit."""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.dataset import Compose
from mmengine.registry import DATASETS, FUNCTIONS
from torch.utils.data import Dataset

from ...core.lazy_index import LazyIndex
from ...core.sample_seed import DrawIndex, draw_entropy
from ..datasets.lidarseg import CAMERAS, scene_keyframes
from ..geometry import cylindrical_voxelize, project_points

__all__ = ['NuScenesSLidRDataset', 'slidr_collate', 'default_pretraining_pipeline']


def default_pretraining_pipeline(crop: Sequence[int] = (224, 416),
                                 min_pairs: int = 1024) -> List[dict]:
    """The paper's pre-training augmentations, in the order of their draws."""
    return [
        dict(type='RandomCameraOrder'),
        dict(type='RandomRotateFlipCloud'),
        dict(type='DropCuboids', min_pairs=min_pairs),
        dict(type='RandomResizedCropFlipImages', size=tuple(crop), min_pairs=min_pairs)
    ]


@DATASETS.register_module()
class NuScenesSLidRDataset(LazyIndex, Dataset):
    """Lidar keyframes with their six camera images, superpixels and pairings.

    Pairings come from the raw cloud (devkit calibration chain, float32, depth
    > 1 m, strict bounds, half-to-even rounding); then the ``pipeline`` runs
    (:mod:`plugins.slidr.datasets.transforms`; in training by default the camera order
    is shuffled, the cloud rotated and flipped, a cuboid dropped, each image
    cropped and resized to ``crop`` (redrawn until enough pairings stay) and
    flipped); the cloud is voxelised on the cylindrical grid and pairings
    point to voxels.

    Args:
        data_root (str): nuScenes root (with ``<version>/``).
        version (str): ``v1.0-mini``, ``v1.0-trainval``...
        split (str): A devkit split (``mini_train``, ``mini_val``, ``train``,
            ``val``) whose scenes are used.
        superpixel_root (str, optional): Folder of ``<camera token>.png`` maps
            (``tools/data/make_superpixels.py``); ``None`` computes them on
            the fly with ``slic_fast`` (kept in memory).
        superpixel_size (int): ``S``; maps with an id ≥ S are refused.
        crop (tuple): Output image size ``(H, W)`` (224, 416) of the default
            pipelines.
        min_pairs (int): Crop and cuboid redraw threshold of the default
            training pipeline (1024; smaller for tiny data).
        augment (bool): Use the training pipeline (default
            :func:`default_pretraining_pipeline`) or the validation one
            (resize only).
        pipeline (list, optional): Transforms (registered ``type`` dicts or
            callables) replacing the default; each draws from
            ``results['rng']``.
        seed (int): Base seed of the augmentation stream.
        lazy_init, serialize_data, test_mode: mmengine's dataset options
            (:class:`~plugins.core.lazy_index.LazyIndex`): ``lazy_init`` defers
            loading the nuScenes tables, ``test_mode`` turns ``augment`` off.

    Raises:
        ValueError: On an unknown split, or a split without scenes in the tree
            (at ``full_init()`` with ``lazy_init``).
    """

    def __init__(self,
                 data_root: str,
                 version: str = 'v1.0-mini',
                 split: str = 'mini_train',
                 superpixel_root: Optional[str] = None,
                 superpixel_size: int = 150,
                 crop: Sequence[int] = (224, 416),
                 min_pairs: int = 1024,
                 augment: bool = True,
                 pipeline: Optional[Sequence] = None,
                 seed: int = 0,
                 lazy_init: bool = False,
                 serialize_data: bool = False,
                 test_mode: bool = False) -> None:
        from nuscenes.utils.splits import create_splits_scenes
        splits = create_splits_scenes()
        if split not in splits:
            raise ValueError(f'unknown nuScenes split {split!r}; choose from {sorted(splits)}')
        self.data_root, self.version, self.split = data_root, version, split
        self.superpixel_root = superpixel_root
        self.superpixel_size = superpixel_size
        self.crop = tuple(crop)
        self.min_pairs = min_pairs
        self.augment = augment
        self.seed = seed
        self.metainfo = {'split': split}
        self._sp_cache: Dict[str, np.ndarray] = {}
        self._epoch_draw = 0
        self._init_index(lazy_init, serialize_data, test_mode)
        if self.test_mode:
            self.augment = False
        if pipeline is None:
            pipeline = (
                default_pretraining_pipeline(self.crop, min_pairs)
                if self.augment else [dict(type='ResizeImages', size=self.crop)])
        self.pipeline = Compose(pipeline)

    def _load_index(self) -> None:
        from nuscenes.nuscenes import NuScenes
        from nuscenes.utils.splits import create_splits_scenes
        self.nusc = NuScenes(self.version, self.data_root, verbose=False)
        self.samples = scene_keyframes(self.nusc, create_splits_scenes()[self.split])
        if not self.samples:
            raise ValueError(f'no scene of split {self.split!r} in {self.data_root} '
                             f'({self.version})')
        self.metainfo['samples'] = len(self.samples)

    def __len__(self) -> int:
        self.full_init()
        return len(self.samples)

    def _superpixels(self, token: str, image: np.ndarray) -> np.ndarray:
        from ..datasets.superpixels import load_labels, slic_fast
        if self.superpixel_root is not None:
            return load_labels(
                os.path.join(self.superpixel_root, f'{token}.png'), self.superpixel_size)
        if token not in self._sp_cache:
            labels = slic_fast(image)  # serial (the default): repeatable under load
            if int(labels.max()) >= self.superpixel_size:
                raise ValueError(f'superpixels of {token} reach id {int(labels.max())} >= '
                                 f'superpixel_size {self.superpixel_size}')
            self._sp_cache[token] = labels
        return self._sp_cache[token]

    def _record(self, table: str, token: str) -> dict:
        return self.nusc.get(table, token)

    def __getitem__(self, idx: int) -> dict:
        import cv2
        self.full_init()
        if not self.augment:
            rng = np.random.default_rng([self.seed, idx])
        elif isinstance(idx, DrawIndex):  # (run seed, epoch, index): exact on resume
            rng = np.random.default_rng([self.seed, *draw_entropy(idx)])
        else:  # a plain sampler: this process's draw count stands in for the epoch
            rng = np.random.default_rng([self.seed, idx, self._epoch_draw])
        self._epoch_draw += 1
        sample = self.nusc.get('sample', self.samples[idx])
        lidar = self.nusc.get('sample_data', sample['data']['LIDAR_TOP'])
        path = os.path.join(self.nusc.dataroot, lidar['filename'])
        if not os.path.isfile(path):
            raise FileNotFoundError(f'lidar file {path} is missing')
        points = np.fromfile(path, np.float32).reshape(-1, 5)[:, :4]
        if points.shape[0] == 0:
            raise ValueError(f'empty scan {path}')
        lidar_calib = self._record('calibrated_sensor', lidar['calibrated_sensor_token'])
        lidar_pose = self._record('ego_pose', lidar['ego_pose_token'])
        raw_images, raw_sps, raw_pairs = [], [], []
        for channel in CAMERAS:
            cam = self.nusc.get('sample_data', sample['data'][channel])
            image = cv2.imread(os.path.join(self.nusc.dataroot, cam['filename']))
            if image is None:
                raise FileNotFoundError(f"camera image {cam['filename']} is missing")
            image = np.ascontiguousarray(image[..., ::-1])
            raw_images.append(image)
            raw_sps.append(self._superpixels(cam['token'], image))
            index, row, col = project_points(
                points, lidar_calib, lidar_pose, self._record('ego_pose', cam['ego_pose_token']),
                self._record('calibrated_sensor', cam['calibrated_sensor_token']), cam['width'],
                cam['height'])
            raw_pairs.append(np.stack([index, row, col], 1))
        results = self.pipeline(
            dict(
                points=points,
                xyz=points[:, :3],
                images=raw_images,
                superpixels=raw_sps,
                pairs=raw_pairs,
                cameras=list(CAMERAS),
                rng=rng))
        xyz, points = results['xyz'], results['points']
        images, sps, pairs = [], [], []
        for n, (image, sp,
                p) in enumerate(zip(results['images'], results['superpixels'], results['pairs'])):
            images.append(np.ascontiguousarray(image).transpose(2, 0, 1))
            sps.append(np.ascontiguousarray(sp))
            pairs.append(np.concatenate([p[:, :1], np.full((len(p), 1), n), p[:, 1:]], 1))
        coords, inverse, first = cylindrical_voxelize(torch.from_numpy(np.ascontiguousarray(xyz)))
        pairs = torch.from_numpy(np.concatenate(pairs, 0).astype(np.int64))
        pairs[:, 0] = inverse[pairs[:, 0]]  # point -> voxel
        return dict(
            coords=coords,
            feats=torch.from_numpy(points[first.numpy(), 3:4].copy()),
            images=torch.from_numpy(np.stack(images)),
            superpixels=torch.from_numpy(np.stack(sps).astype(np.int64)),
            pairs=pairs)


@FUNCTIONS.register_module()
def slidr_collate(batch: List[dict]) -> dict:
    """Concatenate scenes: voxel coords get a batch column, pairing rows are
    offset by the voxels of earlier scenes and image indices by ``b·C``."""
    coords, feats, images, sps, pairs = [], [], [], [], []
    voxels = cams = 0
    for b, item in enumerate(batch):
        v = item['coords'].shape[0]
        coords.append(torch.cat([torch.full((v, 1), b, dtype=torch.long), item['coords']], 1))
        feats.append(item['feats'])
        images.append(item['images'])
        sps.append(item['superpixels'])
        p = item['pairs'].clone()
        p[:, 0] += voxels
        p[:, 1] += cams
        pairs.append(p)
        voxels += v
        cams += item['images'].shape[0]
    return dict(
        coords=torch.cat(coords),
        feats=torch.cat(feats),
        images=torch.cat(images),
        superpixels=torch.cat(sps),
        pairs=torch.cat(pairs))
