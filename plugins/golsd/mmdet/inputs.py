"""Checks of the ground truth entering a GO-LSD detector's loss."""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ['check_ground_truth']


def _name(sample, i: int) -> str:
    path = sample.metainfo.get('img_path') if hasattr(sample, 'metainfo') else None
    return f'image {i}' + (f' ({path})' if path else '')


def check_ground_truth(batch_data_samples: Sequence, num_classes: int) -> None:
    """Refuse labels outside ``[0, num_classes)`` and non-finite or inverted boxes.

    One device sync for the batch; the offending image is located only on
    failure.

    Args:
        batch_data_samples (Sequence[DetDataSample]): With ``gt_instances``
            (``labels (G,)``, ``bboxes (G, 4)`` xyxy in pixels).
        num_classes (int): The head's class count.

    Raises:
        ValueError: Naming the image, the ground-truth row and its value.
    """
    labels, boxes = [], []
    for s in batch_data_samples:
        gt = s.gt_instances
        labels.append(gt.labels.reshape(-1))
        b = gt.bboxes
        boxes.append((b.tensor if hasattr(b, 'tensor') else b).reshape(-1, 4))
    if not labels or sum(t.numel() for t in labels) == 0:
        return
    lab, box = torch.cat(labels), torch.cat(boxes).float()
    bad = ((lab < 0) | (lab >= num_classes) | ~torch.isfinite(box).all(1)
           | (box[:, 2] < box[:, 0]) | (box[:, 3] < box[:, 1]))
    if not bool(bad.any()):
        return
    for i, (s, l, b) in enumerate(zip(batch_data_samples, labels, boxes)):
        for g in range(l.numel()):
            label, row = int(l[g]), b[g].tolist()
            if not 0 <= label < num_classes:
                raise ValueError(f'{_name(s, i)}: ground truth {g} has label {label}, outside '
                                 f'[0, {num_classes}) of the head (num_classes={num_classes}); '
                                 f'check the dataset classes and the annotation file')
            if not all(v == v and abs(v) != float('inf') for v in row):
                raise ValueError(f'{_name(s, i)}: ground truth {g} has a non-finite box {row}')
            if row[2] < row[0] or row[3] < row[1]:
                raise ValueError(f'{_name(s, i)}: ground truth {g} has an inverted box {row} '
                                 f'(x2 < x1 or y2 < y1; boxes are x1, y1, x2, y2 in pixels)')
