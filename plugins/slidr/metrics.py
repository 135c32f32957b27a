"""Downstream lidar segmentation on plain tensors: the Lovász-softmax loss and
the confusion matrix / IoU of the evaluation (point mIoU)."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = ['lovasz_softmax', 'confusion_matrix', 'iou_from_confusion']


def lovasz_softmax(probs: Tensor, labels: Tensor, ignore_index: Optional[int] = None) -> Tensor:
    """Lovász-softmax loss (Berman et al., 2018) over the classes present.

    For each class ``c`` present in ``labels``: sort the errors ``|[y = c] − p_c|``
    in decreasing order and take their dot product with the gradient of the
    Lovász extension of the Jaccard loss; average over those classes.

    Args:
        probs (Tensor): ``(N, C)`` class probabilities.
        labels (Tensor): ``(N,)`` class ids.
        ignore_index (int, optional): Rows with this label are left out.

    Returns:
        Tensor: A scalar (0 with a graph when no row is left).

    Raises:
        ValueError: If a kept label is outside ``[0, C)``.
    """
    if ignore_index is not None:
        keep = labels != ignore_index
        probs, labels = probs[keep], labels[keep]
    if labels.numel() == 0:
        return probs.sum() * 0.0
    present = torch.unique(labels).tolist()  # sorted; the one host read
    if present[0] < 0 or present[-1] >= probs.shape[1]:
        raise ValueError(f'lovasz_softmax: labels must lie in [0, {probs.shape[1]}) for '
                         f'{probs.shape[1]} classes (or equal ignore_index={ignore_index}), '
                         f'got values in [{present[0]}, {present[-1]}]')
    losses = []
    for c in present:
        fg = (labels == c).to(probs.dtype)
        errors = (fg - probs[:, c]).abs()
        errors, order = torch.sort(errors, descending=True)
        fg = fg[order]
        gts = fg.sum()
        intersection = gts - fg.cumsum(0)
        union = gts + (1.0 - fg).cumsum(0)
        jaccard = 1.0 - intersection / union
        jaccard = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
        losses.append(torch.dot(errors, jaccard))
    return torch.stack(losses).mean()


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """``(C, C)`` counts, rows = ground truth, columns = prediction.

    Args:
        pred (Tensor): ``(N,)`` predicted class ids in ``[0, C)``.
        target (Tensor): ``(N,)`` true class ids in ``[0, C)``.
        num_classes (int): ``C``.

    Raises:
        ValueError: On different lengths or ids outside ``[0, C)`` (they would
            be counted in another cell).
    """
    if pred.shape != target.shape:
        raise ValueError(f'pred {tuple(pred.shape)} and target {tuple(target.shape)} differ')
    for name, ids in (('pred', pred), ('target', target)):
        if not ids.numel():
            continue
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f'confusion_matrix: {name} ids must lie in [0, {num_classes}), '
                             f'got values in [{lo}, {hi}]')
    index = target.long() * num_classes + pred.long()
    return torch.bincount(index, minlength=num_classes**2).view(num_classes, num_classes)


def iou_from_confusion(confusion: Tensor, ignore_index: int = 0) -> Tuple[Tensor, float]:
    """Per-class IoU ``TP / (TP + FP + FN)`` after zeroing the ground-truth
    row of ``ignore_index``; a class with an empty union gets IoU 1 (the
    reference's rule). mIoU averages the classes other than ``ignore_index``.
    """
    conf = confusion.clone().double()
    conf[ignore_index] = 0
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.ones_like(tp))
    keep = [c for c in range(conf.shape[0]) if c != ignore_index]
    return iou, float(iou[keep].mean())
