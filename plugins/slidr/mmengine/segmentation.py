"""Lidar semantic segmentation for SLidR's evaluation: data, model, metric."""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.dataset import Compose
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, FUNCTIONS, METRICS, MODELS
from torch import Tensor
from torch.utils.data import Dataset

from ...core.lazy_index import LazyIndex
from ...core.options import check_kwargs
from ...core.sample_seed import DrawIndex, draw_entropy
from ..datasets.lidarseg import (NUSCENES_CLASSES, fine_to_coarse, keep_every_kth_scene,
                                 scene_keyframes)
from ..geometry import cylindrical_voxelize
from ..metrics import confusion_matrix, iou_from_confusion, lovasz_softmax
from ..models.sparse import SparseUNet

__all__ = [
    'NuScenesLidarSegDataset', 'SemanticKITTIDataset', 'lidarseg_collate', 'SLidRSegmentor',
    'PointMIoUMetric'
]


class _SeededAugment:
    """A fresh augmentation stream per draw: (seed, run seed, epoch, index) from a
    ``DrawIndex``, else (seed, index, this process's draw count); and the
    pipeline (default: :class:`~plugins.slidr.datasets.transforms.RandomRotateFlipCloud`
    when augmenting, nothing otherwise)."""

    augment: bool
    seed: int
    _draw: int

    def _set_pipeline(self, pipeline: Optional[Sequence]) -> None:
        if pipeline is None:
            pipeline = [dict(type='RandomRotateFlipCloud')] if self.augment else []
        self.pipeline = Compose(pipeline)

    def _item(self, idx: int, xyz: np.ndarray, feats: np.ndarray, labels: Tensor) -> dict:
        """Run the pipeline on the cloud, voxelise, and take the representative
        point's feature and label per voxel."""
        results = self.pipeline(
            dict(xyz=xyz, points=np.concatenate([xyz, feats], 1), rng=self._rng(idx)))
        coords, inverse, first = cylindrical_voxelize(
            torch.from_numpy(np.ascontiguousarray(results['xyz'])))
        return dict(
            coords=coords,
            feats=torch.from_numpy(np.ascontiguousarray(feats[first.numpy()])),
            labels=labels[first],
            inverse=inverse,
            point_labels=labels)

    def _rng(self, idx: int) -> np.random.Generator:
        if not self.augment:  # a fixed stream, for a pipeline that draws anyway
            return np.random.default_rng([self.seed, int(idx)])
        self._draw += 1
        if isinstance(idx, DrawIndex):  # (run seed, epoch, index): exact on resume
            return np.random.default_rng([self.seed, *draw_entropy(idx)])
        # a plain sampler: this process's draw count stands in for the epoch
        return np.random.default_rng([self.seed, idx, self._draw])


@DATASETS.register_module()
class NuScenesLidarSegDataset(LazyIndex, _SeededAugment, Dataset):
    """nuScenes keyframes with lidarseg labels mapped to the 16 classes.

    Args:
        data_root, version, split: As :class:`NuScenesSLidRDataset`.
        label_every (int): Keep every k-th scene of the split (k = 100: 1 %).
        augment (bool): Rotation about z and axis flips (training): the
            default pipeline.
        pipeline (list, optional): Cloud transforms replacing the default
            (:mod:`plugins.slidr.datasets.transforms`); each draws from
            ``results['rng']``.
        lazy_init, serialize_data, test_mode: mmengine's dataset options
            (:class:`~plugins.core.lazy_index.LazyIndex`): ``lazy_init`` defers
            loading the nuScenes tables, ``test_mode`` turns ``augment`` off.

    Items: ``coords (V, 3)``, ``feats (V, 1)`` (intensity of the
    representative point), ``labels (V,)`` (its label), ``inverse (N,)`` and
    ``point_labels (N,)`` for evaluation on points.

    Raises:
        ValueError: On an unknown split, or no labelled scene left (at
            ``full_init()`` with ``lazy_init``).
    """

    def __init__(self,
                 data_root: str,
                 version: str = 'v1.0-mini',
                 split: str = 'mini_train',
                 label_every: int = 1,
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
        self.label_every = label_every
        self.augment = augment
        self.seed = seed
        self._draw = 0
        self.metainfo = {'classes': NUSCENES_CLASSES, 'split': split}
        self._init_index(lazy_init, serialize_data, test_mode)
        if self.test_mode:
            self.augment = False
        self._set_pipeline(pipeline)

    def _load_index(self) -> None:
        from nuscenes.nuscenes import NuScenes
        from nuscenes.utils.splits import create_splits_scenes
        self.nusc = NuScenes(self.version, self.data_root, verbose=False)
        if not hasattr(self.nusc, 'lidarseg'):
            raise ValueError(f'{self.data_root} ({self.version}) has no lidarseg labels')
        split_names = set(create_splits_scenes()[self.split])
        names = [s['name'] for s in self.nusc.scene if s['name'] in split_names]
        self.samples = scene_keyframes(self.nusc, keep_every_kth_scene(names, self.label_every))
        if not self.samples:
            raise ValueError(f'no labelled keyframe in split {self.split!r} with label_every='
                             f'{self.label_every}')
        self.lut = torch.from_numpy(fine_to_coarse(self.nusc.lidarseg_idx2name_mapping)).long()
        self.metainfo['samples'] = len(self.samples)

    def __len__(self) -> int:
        self.full_init()
        return len(self.samples)

    def __getitem__(self, idx: int) -> dict:
        self.full_init()
        sample = self.nusc.get('sample', self.samples[idx])
        lidar = self.nusc.get('sample_data', sample['data']['LIDAR_TOP'])
        points = np.fromfile(os.path.join(self.nusc.dataroot, lidar['filename']),
                             np.float32).reshape(-1, 5)[:, :4]
        label_file = os.path.join(self.nusc.dataroot,
                                  self.nusc.get('lidarseg', lidar['token'])['filename'])
        fine = torch.from_numpy(np.fromfile(label_file, np.uint8).astype(np.int64))
        if fine.shape[0] != points.shape[0]:
            raise ValueError(
                f'{label_file} has {fine.shape[0]} labels for {points.shape[0]} points')
        return self._item(idx, points[:, :3], points[:, 3:4], self.lut[fine])


@DATASETS.register_module()
class SemanticKITTIDataset(LazyIndex, _SeededAugment, Dataset):
    """SemanticKITTI scans for lidar segmentation (19 classes + ignore 0).

    Args:
        data_root (str): Folder holding ``dataset/sequences``.
        split (str): ``'train'`` (00-07, 09, 10) or ``'val'`` (08).
        label_every (int): Keep every k-th of the sorted training scans (k = 100:
            1 %).
        augment (bool): Rotation about z and axis flips (the default
            pipeline).
        pipeline (list, optional): As :class:`NuScenesLidarSegDataset`.
        lazy_init, serialize_data, test_mode: As :class:`NuScenesLidarSegDataset`
            (``lazy_init`` defers listing the scans).

    The voxel feature is ``remission + 1`` of the representative point.

    Raises:
        ValueError: On an unknown split.
    """

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 label_every: int = 1,
                 augment: bool = True,
                 pipeline: Optional[Sequence] = None,
                 seed: int = 0,
                 lazy_init: bool = False,
                 serialize_data: bool = False,
                 test_mode: bool = False) -> None:
        from ..datasets.semantickitti import learning_map
        if split not in ('train', 'val'):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        self.data_root, self.split, self.label_every = data_root, split, label_every
        self.lut = torch.from_numpy(learning_map())
        self.augment = augment
        self.seed = seed
        self._draw = 0
        self.metainfo = {'split': split}
        self._init_index(lazy_init, serialize_data, test_mode)
        if self.test_mode:
            self.augment = False
        self._set_pipeline(pipeline)

    def _load_index(self) -> None:
        from ..datasets.semantickitti import TRAIN_SEQUENCES, VAL_SEQUENCES, scan_paths
        train = self.split == 'train'
        paths = scan_paths(self.data_root, TRAIN_SEQUENCES if train else VAL_SEQUENCES)
        self.paths = paths[::self.label_every] if train else paths
        self.metainfo['scans'] = len(self.paths)

    def __len__(self) -> int:
        self.full_init()
        return len(self.paths)

    def __getitem__(self, idx: int) -> dict:
        self.full_init()
        from ..datasets.semantickitti import read_labels, read_scan
        scan, label = self.paths[idx]
        points = read_scan(scan)
        if points.shape[0] == 0:
            raise ValueError(f'empty scan {scan}')
        raw = torch.from_numpy(read_labels(label, points.shape[0]))
        if int(raw.max()) >= self.lut.numel():
            raise ValueError(f'{label} holds semantic id {int(raw.max())} outside the map')
        return self._item(idx, points[:, :3], points[:, 3:4] + 1.0, self.lut[raw])


@FUNCTIONS.register_module()
def lidarseg_collate(batch: List[dict]) -> dict:
    """Concatenate scenes; ``inverse`` is offset into the batch's voxel rows."""
    out = {k: [] for k in ('coords', 'feats', 'labels', 'inverse', 'point_labels')}
    voxels = 0
    for b, item in enumerate(batch):
        v = item['coords'].shape[0]
        out['coords'].append(
            torch.cat([torch.full((v, 1), b, dtype=torch.long), item['coords']], 1))
        out['feats'].append(item['feats'])
        out['labels'].append(item['labels'])
        out['inverse'].append(item['inverse'] + voxels)
        out['point_labels'].append(item['point_labels'])
        voxels += v
    return {k: torch.cat(v) for k, v in out.items()}


@MODELS.register_module()
class SLidRSegmentor(BaseModel):
    """The sparse U-Net with a ``num_classes`` head, for linear probing,
    fine-tuning or training from scratch.

    Args:
        backbone (dict): :class:`~plugins.slidr.models.sparse.SparseUNet` arguments.
        num_classes (int): 17 for nuScenes (class 0 ignored).
        pretrained (str, optional): A SLidR pre-training checkpoint; its
            ``student.*`` tensors whose shapes match are loaded (the 64-d
            ``final`` is not).
        linear_probe (bool): Train only ``final`` and keep the network in eval
            mode (frozen batch-norm statistics).
        lovasz (bool): Add the Lovász-softmax loss to cross-entropy.
        ignore_index (int): 0.
    """

    def __init__(self,
                 backbone: dict,
                 num_classes: int = 17,
                 pretrained: Optional[str] = None,
                 linear_probe: bool = False,
                 lovasz: bool = True,
                 ignore_index: int = 0,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        check_kwargs(backbone, SparseUNet, 'model.backbone', exclude=('out_channels', 'normalize'))
        self.backbone = SparseUNet(**dict(backbone, out_channels=num_classes, normalize=False))
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.lovasz = lovasz
        self.linear_probe = linear_probe
        self.loaded: List[str] = []
        if pretrained:
            self.loaded = self.load_student(pretrained)
        if linear_probe:
            for name, p in self.backbone.named_parameters():
                p.requires_grad_(name.startswith('final.'))

    def load_student(self, path: str) -> List[str]:
        """Copy shape-matching ``student.*`` tensors of a pre-training checkpoint.

        Raises:
            ValueError: If the checkpoint holds no student tensor.
        """
        from plugins.core.checkpoint import load_checkpoint
        state = load_checkpoint(path)
        state = state.get('state_dict', state)
        own = self.backbone.state_dict()
        matched = {k[len('student.'):]: v for k, v in state.items() if k.startswith('student.')}
        if not matched:
            raise ValueError(f'{path} holds no student.* tensors (a SLidR pre-training '
                             f'checkpoint is expected)')
        take = {k: v for k, v in matched.items() if k in own and own[k].shape == v.shape}
        self.backbone.load_state_dict(take, strict=False)
        return sorted(take)

    def train(self, mode: bool = True) -> 'SLidRSegmentor':
        super().train(mode)
        if self.linear_probe:
            self.backbone.eval()
        return self

    def forward(self,
                coords: Tensor,
                feats: Tensor,
                labels: Tensor = None,
                inverse: Tensor = None,
                point_labels: Tensor = None,
                mode: str = 'tensor'):
        logits = self.backbone(coords, feats)
        if mode == 'tensor':
            return logits
        if mode == 'loss':
            ce = F.cross_entropy(logits, labels, ignore_index=self.ignore_index)
            out = {'loss_ce': ce}
            if self.lovasz:
                out['loss_lovasz'] = lovasz_softmax(logits.softmax(1), labels, self.ignore_index)
            return out
        if mode == 'predict':
            masked = logits.detach().clone()
            masked[:, self.ignore_index] = -1e6
            pred = masked.argmax(1)[inverse]
            return [dict(pred=pred, target=point_labels)]
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")


@METRICS.register_module()
class PointMIoUMetric(BaseMetric):
    """mIoU over all validation points (voxel predictions through ``inverse``):
    one confusion matrix, the ignore class's ground-truth row zeroed, IoU 1 for
    an empty union (the reference's rule; it inflates tiny validation sets, so
    every class's IoU and ``mIoU_present``, the mean over the classes present
    in the ground truth, are reported too)."""

    default_prefix: Optional[str] = 'lidarseg'

    def __init__(self,
                 num_classes: int = 17,
                 ignore_index: int = 0,
                 class_names: Sequence[str] = NUSCENES_CLASSES,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = list(class_names)

    def process(self, data_batch, data_samples) -> None:
        for s in data_samples:
            self.results.append(
                confusion_matrix(s['pred'].cpu(), s['target'].cpu(), self.num_classes))

    def compute_metrics(self, results: List[Tensor]) -> Dict[str, float]:
        confusion = torch.stack(results).sum(0)
        iou, miou = iou_from_confusion(confusion, self.ignore_index)
        present = [
            c for c in range(self.num_classes) if c != self.ignore_index and confusion[c].sum() > 0
        ]
        out = {
            'mIoU': miou,
            'mIoU_present': float(iou[present].mean()) if present else float('nan')
        }
        for c in range(self.num_classes):
            if c != self.ignore_index:
                out[f'IoU_{self.class_names[c]}'] = float(iou[c])
        return out
