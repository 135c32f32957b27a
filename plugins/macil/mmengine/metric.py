"""Frame-level PR-AUC (the upstream "AP") and step AP over the test set."""
from __future__ import annotations

import os
from typing import Dict, List, Optional

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS

from ..datasets.xdviolence import FRAMES_PER_SNIPPET
from ..metrics import pr_auc, step_ap

__all__ = ['FrameAPMetric']


@METRICS.register_module()
class FrameAPMetric(BaseMetric):
    """``pr_auc`` (headline, trapezoidal PR-AUC) and ``ap`` (step AP) on all
    test frames: snippet scores repeated 16×, videos in test-list order,
    compared with ``gt.npy``.

    Args:
        gt_file (str): Frame labels of the test set.
        dump_scores (str, optional): Also save the frame scores (``.npy``).

    Raises:
        ValueError: If the frame count differs from ``len(gt)`` (both given).
    """

    default_prefix: Optional[str] = 'xdv'

    def __init__(self,
                 gt_file: str,
                 dump_scores: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.gt_file = gt_file
        self.dump_scores = dump_scores

    def process(self, data_batch, data_samples) -> None:
        for s in data_samples:
            self.results.append((int(s['index']), s['scores'].detach().float().cpu().numpy()))

    def compute_metrics(self, results: List) -> Dict[str, float]:
        order = sorted(results, key=lambda r: r[0])
        frames = np.concatenate([np.repeat(s, FRAMES_PER_SNIPPET) for _, s in order])
        gt = np.load(self.gt_file).ravel()
        if frames.size != gt.size:
            raise ValueError(f'{frames.size} predicted frames (16 x {frames.size // 16} '
                             f'snippets over {len(order)} videos) but {self.gt_file} has '
                             f'{gt.size} labels')
        if self.dump_scores:
            os.makedirs(os.path.dirname(os.path.abspath(self.dump_scores)), exist_ok=True)
            np.save(self.dump_scores, frames)
        return {'pr_auc': pr_auc(frames, gt), 'ap': step_ap(frames, gt)}
