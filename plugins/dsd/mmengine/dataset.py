"""MSD-layout dataset for the mmengine Runner, loaded with MONAI transforms."""
from __future__ import annotations

import os
import random
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.registry import DATASETS, FUNCTIONS
from torch.utils.data import Dataset

from ...core.lazy_index import LazyIndex
from ...core.sample_seed import DrawIndex, sample_seed
from ..datasets.msd import read_msd_datalist

__all__ = ['MSDDataset', 'msd_collate', 'split_cases']


def split_cases(num: int, num_val: int, num_test: int = 0, seed: int = 0) -> Dict[str, List[int]]:
    """The reference split: sort, the last ``num_test`` are test, shuffle the
    rest with ``random.Random(seed)``; the last ``num_val`` of them validate.

    Raises:
        ValueError: If nothing is left to train on.
    """
    if num - num_test - num_val < 1:
        raise ValueError(f'{num} cases leave nothing to train on with num_val={num_val}, '
                         f'num_test={num_test}')
    rest = list(range(num - num_test))
    random.Random(seed).shuffle(rest)
    return {
        'train': rest[:len(rest) - num_val],
        'val': rest[len(rest) - num_val:],
        'test': list(range(num - num_test, num))
    }


@DATASETS.register_module()
class MSDDataset(LazyIndex, Dataset):
    """Cases of an MSD task (``dataset.json`` lists), as ``dict(inputs=(C, *S),
    data_samples=(1, *S))``; training items are lists of ``num_samples`` crops.

    Transforms (MONAI): load, channel first, RAS, intensity scaling to [0, 1]
    (``scale_intensity``), then for training: pad to ``roi_size``, crops by
    positive/negative label (``pos``, ``neg``), flips (``flip_prob`` per axis),
    90° rotations (``rot90_prob``) and an intensity shift (``shift_offset``,
    ``shift_prob``); validation and test keep whole volumes.

    Args:
        task_dir (str): ``TaskXX_Name`` folder.
        split (str): ``'train'``, ``'val'`` or ``'test'`` (see
            :func:`split_cases`; the sorted ``training`` list is split).
        num_val, num_test, seed: Split sizes and shuffle seed.
        roi_size (Sequence[int]): Training crop.
        num_samples (int): Crops per volume and step.
        pos, neg, flip_prob, rot90_prob, shift_offset, shift_prob,
        scale_intensity: Augmentation settings.
        cache (bool): Keep loaded (pre-augmentation) volumes in memory.
        lazy_init, serialize_data, test_mode: mmengine's dataset options
            (:class:`~plugins.core.lazy_index.LazyIndex`); ``test_mode``
            gives whole volumes without augmentation, even for ``'train'``.

    Raises:
        ValueError: On an unknown split; see also :func:`read_msd_datalist`
            (at ``full_init()`` with ``lazy_init``).
    """

    def __init__(self,
                 task_dir: str,
                 split: str = 'train',
                 num_val: int = 2,
                 num_test: int = 0,
                 seed: int = 0,
                 roi_size: Sequence[int] = (32, 32, 32),
                 num_samples: int = 2,
                 pos: float = 1.0,
                 neg: float = 1.0,
                 flip_prob: float = 0.5,
                 rot90_prob: float = 0.1,
                 shift_offset: float = 0.1,
                 shift_prob: float = 0.5,
                 scale_intensity: bool = True,
                 cache: bool = True,
                 serialize_data: bool = False,
                 lazy_init: bool = False,
                 test_mode: bool = False) -> None:
        if split not in ('train', 'val', 'test'):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        self.task_dir = task_dir
        self._split_args = (num_val, num_test, seed)
        self.split = split
        self.roi_size = tuple(roi_size)
        self.metainfo = {'task_dir': task_dir, 'split': split}
        self._cache: Dict[int, dict] = {}
        self.cache = cache
        self._load, self._augment = self._build(num_samples, pos, neg, flip_prob, rot90_prob,
                                                shift_offset, shift_prob, scale_intensity)
        self._seeded_in: Optional[int] = None
        self._init_index(lazy_init, serialize_data, test_mode)
        if self.test_mode:
            self._augment = None  # whole volumes, no random transforms

    def _load_index(self) -> None:
        items = sorted(read_msd_datalist(self.task_dir), key=lambda d: d['image'])
        index = split_cases(len(items), *self._split_args)[self.split]
        self.items = [items[i] for i in sorted(index)]

    def _build(self, num_samples, pos, neg, flip_prob, rot90_prob, shift_offset, shift_prob,
               scale_intensity):
        from monai.transforms import (Compose, EnsureChannelFirstd, LoadImaged, Orientationd,
                                      RandCropByPosNegLabeld, RandFlipd, RandRotate90d,
                                      RandShiftIntensityd, ScaleIntensityd, SpatialPadd)
        keys = ['image', 'label']
        load = [
            LoadImaged(keys, image_only=True),
            EnsureChannelFirstd(keys),
            # RAS with the classic axis labels, stated (MONAI now reads
            # them from the image's space when left out, and warns)
            Orientationd(keys, axcodes='RAS', labels=(('L', 'R'), ('P', 'A'), ('I', 'S')))
        ]
        if scale_intensity:
            load.append(ScaleIntensityd('image'))
        if self.split != 'train':
            return Compose(load), None
        augment = [
            SpatialPadd(keys, self.roi_size, mode='edge'),
            RandCropByPosNegLabeld(
                keys, 'label', self.roi_size, pos=pos, neg=neg, num_samples=num_samples)
        ]
        augment += [
            RandFlipd(keys, prob=flip_prob, spatial_axis=a) for a in range(len(self.roi_size))
        ]
        augment += [
            RandRotate90d(keys, prob=rot90_prob, max_k=3),
            RandShiftIntensityd('image', offsets=shift_offset, prob=shift_prob)
        ]
        return Compose(load), Compose(augment)

    def __len__(self) -> int:
        self.full_init()
        return len(self.items)

    def _loaded(self, idx: int) -> dict:
        self.full_init()
        if idx in self._cache:
            return self._cache[idx]
        item = self.items[idx]
        data = self._load(dict(item))
        self._check_shapes(item, data)
        if self.cache:
            self._cache[idx] = data
        return data

    def _check_shapes(self, item: dict, data: dict) -> None:
        """Image and label must cover the same voxels, with the task's dimensions.

        Raises:
            ValueError: Naming the files and their shapes.
        """
        dims = len(self.roi_size)
        image = tuple(data['image'].shape)
        if len(image) != dims + 1:
            raise ValueError(f"{item['image']}: a {len(image) - 1}-D image (shape {image[1:]}) "
                             f'in a {dims}-D task (roi_size {self.roi_size})')
        if 'label' in data:
            label = tuple(data['label'].shape)
            if label[1:] != image[1:]:
                raise ValueError(f"{item['label']}: label shape {label[1:]} differs from the "
                                 f"image's {image[1:]} ({item['image']}); they must cover the "
                                 f'same voxels')

    def __getitem__(self, idx: int):
        data = self._loaded(idx)
        if self._augment is None:
            return self._pack(data)
        if isinstance(idx, DrawIndex):
            # a per-sample seed from (run seed, epoch, index): the same crops and
            # flips whatever ran before, so a resumed run repeats them exactly
            self._augment.set_random_state(seed=sample_seed(idx.seed, idx.draw, int(idx)))
        elif self._seeded_in != os.getpid():
            # a plain sampler: MONAI's random transforms share an entropy-seeded
            # generator unless given one; draw its seed from numpy's global
            # generator, which the Runner seeds (and its worker_init_fn per
            # worker), so a seeded run repeats, though a resumed one does not
            self._augment.set_random_state(seed=int(np.random.randint(2**31 - 1)))
            self._seeded_in = os.getpid()
        out = self._augment({k: v.clone() for k, v in data.items()})
        return [self._pack(d) for d in (out if isinstance(out, list) else [out])]

    @staticmethod
    def _pack(data: dict) -> dict:
        image, label = data['image'], data['label']
        if hasattr(image, 'as_tensor'):  # MONAI MetaTensor -> plain tensor
            image, label = image.as_tensor(), label.as_tensor()
        return {
            'inputs': torch.as_tensor(image).float(),
            'data_samples': torch.as_tensor(label).round().long()
        }


@FUNCTIONS.register_module()
def msd_collate(batch: List) -> dict:
    """Stack ``dict(inputs, data_samples)`` items (crop lists are flattened).

    Raises:
        ValueError: If the items' shapes differ (name both shapes).
    """
    flat: List[dict] = []
    for item in batch:
        flat.extend(item if isinstance(item, list) else [item])
    shapes = {tuple(d['inputs'].shape) for d in flat}
    if len(shapes) > 1:
        raise ValueError(f'cannot batch volumes of different shapes {sorted(shapes)}; use '
                         f'batch_size=1 for whole-volume validation')
    return {
        'inputs': torch.stack([d['inputs'] for d in flat]),
        'data_samples': torch.stack([d['data_samples'] for d in flat])
    }
