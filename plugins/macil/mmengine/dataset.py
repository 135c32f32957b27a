"""XD-Violence features for the mmengine Runner."""
from __future__ import annotations

import os
from typing import List, Optional

import numpy as np
import torch
from mmengine.registry import DATASETS, FUNCTIONS
from torch.utils.data import Dataset

from ...core.lazy_index import LazyIndex
from ..datasets.xdviolence import CROPS, fit_length, load_pair, pair_lists, read_list, video_label

__all__ = ['XDViolenceDataset', 'xdv_test_collate']


@DATASETS.register_module()
class XDViolenceDataset(LazyIndex, Dataset):
    """Training crops or whole test videos.

    * ``split='train'``: one item per crop line, ``dict(visual (L, 1024),
      audio (L, 128), labels ())`` with ``L = max_len`` (uniform sub-sampling
      or zero padding, each modality separately).
    * ``split='test'``: one item per video, ``dict(visual (5, T, 1024),
      audio (5, T, 128), labels (), index ())`` at full length, the audio
      repeated for the five crops.

    Args:
        data_root (str): Folder the list files are relative to (list lines
            themselves are absolute paths, or relative to ``data_root``).
        rgb_list, audio_list (str): List files (default ``rgb.list`` /
            ``audio.list``, or ``rgb_test.list`` / ``audio_test.list``).
        split (str): ``'train'`` or ``'test'``.
        max_len (int): Training length (200).
        lazy_init, serialize_data, test_mode: mmengine's dataset options
            (:class:`~plugins.core.lazy_index.LazyIndex`); there is no
            augmentation for ``test_mode`` to switch off.

    Raises:
        ValueError: On an unknown split or lists that do not pair (at
            ``full_init()`` with ``lazy_init``).
    """

    def __init__(self,
                 data_root: str = '',
                 split: str = 'train',
                 rgb_list: Optional[str] = None,
                 audio_list: Optional[str] = None,
                 max_len: int = 200,
                 lazy_init: bool = False,
                 serialize_data: bool = False,
                 test_mode: bool = False) -> None:
        if split not in ('train', 'test'):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        suffix = '' if split == 'train' else '_test'
        self.data_root = data_root
        self.lists = (os.path.join(data_root, rgb_list or f'rgb{suffix}.list'),
                      os.path.join(data_root, audio_list or f'audio{suffix}.list'))
        self.split = split
        self.max_len = max_len
        self.metainfo = {'split': split}
        self._init_index(lazy_init, serialize_data, test_mode)

    def _load_index(self) -> None:
        root = self.data_root
        resolve = lambda p: p if os.path.isabs(p) else os.path.join(root, p)  # noqa: E731
        rgb = [resolve(p) for p in read_list(self.lists[0])]
        audio = [resolve(p) for p in read_list(self.lists[1])]
        self.pairs = pair_lists(rgb, audio)
        self.metainfo['videos'] = len(audio)
        self.labels = [video_label(crop) for crop, _ in self.pairs]

    def __len__(self) -> int:
        self.full_init()
        return len(self.pairs) if self.split == 'train' else len(self.pairs) // CROPS

    def __getitem__(self, idx: int) -> dict:
        self.full_init()
        if self.split == 'train':
            crop, audio = self.pairs[idx]
            v, a = load_pair(crop, audio)
            return dict(
                visual=torch.from_numpy(fit_length(v, self.max_len)),
                audio=torch.from_numpy(fit_length(a, self.max_len)),
                labels=torch.tensor(float(self.labels[idx])))
        crops = [load_pair(*self.pairs[idx * CROPS + c]) for c in range(CROPS)]
        lengths = {v.shape[0] for v, _ in crops}
        if len(lengths) > 1:
            raise ValueError(f'test video {idx} has crops of different lengths {sorted(lengths)}')
        visual = np.stack([v for v, _ in crops])
        audio = np.stack([a for _, a in crops])
        return dict(
            visual=torch.from_numpy(visual),
            audio=torch.from_numpy(audio),
            labels=torch.tensor(float(self.labels[idx * CROPS])),
            index=torch.tensor(idx))


@FUNCTIONS.register_module()
def xdv_test_collate(batch: List[dict]) -> dict:
    """Keep whole test videos apart: lists of ``(5, T, D)`` tensors."""
    return {k: [item[k] for item in batch] for k in batch[0]}
