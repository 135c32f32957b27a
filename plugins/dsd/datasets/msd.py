"""Medical Segmentation Decathlon (MSD) layout: the data list
reader, and sliding-window Dice / HD95 evaluation with MONAI.

Layout: ``TaskXX_Name/dataset.json``, ``imagesTr/*.nii.gz``, ``labelsTr/*.nii.gz``,
``imagesTs/*.nii.gz``. The lists come from ``dataset.json`` (never a glob: real
archives contain macOS ``._*`` files).
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from ...core.options import read_json

__all__ = ['read_msd_datalist', 'evaluate_dice_hd95']

_REQUIRED = ('name', 'labels', 'modality', 'training', 'numTraining')


def read_msd_datalist(task_dir: str, split: str = 'training') -> List[Dict[str, str]]:
    """Absolute ``{'image', 'label'}`` (or ``{'image'}`` for test) paths.

    Raises:
        FileNotFoundError: If ``dataset.json`` or a listed file is missing.
        ValueError: On a malformed or truncated ``dataset.json`` (names the
            file, and the missing keys).
    """
    path = os.path.join(task_dir, 'dataset.json')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{task_dir} has no dataset.json (MSD layout expected)')
    meta = read_json(path, 'MSD datalist')
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise ValueError(f'{path} lacks the MSD keys {missing}')
    if split not in ('training', 'test'):
        raise ValueError(f"split must be 'training' or 'test', got {split!r}")
    entries = meta.get(split, [])
    out = []
    for entry in entries:
        item = entry if isinstance(entry, dict) else {'image': entry}
        item = {k: os.path.normpath(os.path.join(task_dir, v)) for k, v in item.items()}
        for v in item.values():
            if not os.path.isfile(v):
                raise FileNotFoundError(f'{path} lists {v}, which does not exist')
        out.append(item)
    return out


def evaluate_dice_hd95(network,
                       loader,
                       roi_size: Sequence[int],
                       num_classes: int,
                       sw_batch_size: int = 1,
                       overlap: float = 0.25,
                       device: Optional[str] = None) -> Dict[str, float]:
    """Mean Dice and HD95 (in voxels) over ``loader``, sliding-window inference.

    Argmax predictions and labels are one-hot encoded; the background is left
    out; no spacing is passed, so HD95 is in voxels.

    Returns:
        dict: ``dice``, ``hd95`` and per-class ``dice_c{k}``.
    """
    import torch
    from monai.inferers import sliding_window_inference
    from monai.metrics import DiceMetric, HausdorffDistanceMetric
    from monai.networks.utils import one_hot

    dice_metric = DiceMetric(include_background=False, reduction='mean_batch')
    hd_metric = HausdorffDistanceMetric(
        include_background=False, percentile=95, reduction='mean_batch')
    was_training = network.training
    network.eval()
    device = device or next(network.parameters()).device
    with torch.no_grad():
        for batch in loader:
            image = batch['image'].to(device)
            label = batch['label'].to(device).long()
            logits = sliding_window_inference(
                image, roi_size, sw_batch_size, network, overlap=overlap, mode='constant')
            pred = one_hot(logits.argmax(1, keepdim=True), num_classes)
            target = one_hot(label, num_classes)
            dice_metric(pred, target)
            hd_metric(pred, target)
    network.train(was_training)
    per_class = dice_metric.aggregate().cpu().numpy()
    hd = hd_metric.aggregate().cpu().numpy()
    out = {'dice': float(np.nanmean(per_class)), 'hd95': float(np.nanmean(hd))}
    out.update({f'dice_c{k + 1}': float(v) for k, v in enumerate(per_class)})
    return out
