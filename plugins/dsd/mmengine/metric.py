"""Dice and HD95 (MONAI metrics) for the mmengine evaluator."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS

__all__ = ['DiceHD95Metric']


@METRICS.register_module()
class DiceHD95Metric(BaseMetric):
    """Mean Dice and 95th-percentile Hausdorff distance over foreground classes.

    Argmax predictions and labels are one-hot encoded, the background is left
    out, and no spacing is passed: HD95 is **in voxels**.
    Reports ``dice``, ``hd95`` and ``dice_c<k>`` per class.

    Args:
        num_classes (int): ``C`` (background included).

    Raises:
        ValueError: If a prediction and its label differ in shape.
    """

    default_prefix: Optional[str] = 'msd'

    def __init__(self,
                 num_classes: int,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.num_classes = int(num_classes)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        from monai.metrics import compute_dice, compute_hausdorff_distance
        from monai.networks.utils import one_hot

        for sample in data_samples:
            pred, label = sample['pred'], sample['label']
            if label is None:
                raise ValueError('DiceHD95Metric needs labels (data_samples) to score')
            if pred.shape != label.shape:
                raise ValueError(f'prediction {tuple(pred.shape)} and label '
                                 f'{tuple(label.shape)} differ in shape')
            p = one_hot(pred[None].long().cpu(), self.num_classes)
            y = one_hot(label[None].long().cpu(), self.num_classes)
            dice = compute_dice(p, y, include_background=False)[0].numpy()
            hd = compute_hausdorff_distance(
                p, y, include_background=False, percentile=95)[0].numpy()
            self.results.append({'dice': dice, 'hd95': hd})

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        dice = np.stack([r['dice'] for r in results])
        hd = np.stack([r['hd95'] for r in results])
        per_class = np.nanmean(dice, axis=0)
        out = {'dice': float(np.nanmean(per_class)), 'hd95': float(np.nanmean(np.nanmean(hd, 0)))}
        out.update({f'dice_c{k + 1}': float(v) for k, v in enumerate(per_class)})
        return out
