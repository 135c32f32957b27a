"""COCO bbox AP at each IoU threshold (0.50, 0.55, ..., 0.95) of detection checkpoints.

    python tools/analysis/ap_by_iou.py CONFIG CHECKPOINT [CHECKPOINT ...] [--labels A B ...]

Runs the config's test loader through each checkpoint (last decoder layer, the
model's own ``predict``) and prints one row per checkpoint: the AP at every IoU
threshold of the COCO protocol and their mean (the COCO bbox mAP). Where two
detectors differ only at the strict thresholds, they differ in localisation;
where they differ at 0.50, in recall and classification.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os.path as osp
import sys
from typing import List, Optional, Sequence

import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(1, osp.join(ROOT, 'tools'))  # the tools' shared modules

#: the ten IoU thresholds of the COCO protocol
IOU_THRESHOLDS = tuple(np.round(np.linspace(0.5, 0.95, 10), 2).tolist())


def ap_per_threshold(precision: np.ndarray) -> np.ndarray:
    """AP at each IoU threshold from COCOeval's ``eval['precision']``.

    Args:
        precision (np.ndarray): ``(T, R, K, A, M)`` precision array; ``-1`` marks
            categories without ground truth. Area range 0 (all) and the last
            max-detections setting are used, as COCO's headline mAP.

    Returns:
        np.ndarray: ``(T,)`` AP per threshold; NaN where no category has ground truth.

    Raises:
        ValueError: If ``precision`` is not 5-dimensional.
    """
    if precision.ndim != 5:
        raise ValueError(f'precision must be (T, R, K, A, M), got shape {precision.shape}')
    p = precision[:, :, :, 0, -1].reshape(precision.shape[0], -1)
    out = np.full(precision.shape[0], np.nan)
    for t in range(p.shape[0]):
        valid = p[t][p[t] > -1]
        if valid.size:
            out[t] = valid.mean()
    return out


def evaluate(config: str, checkpoints: Sequence[str]) -> List[np.ndarray]:
    """``(T,)`` AP per IoU threshold for each checkpoint on the config's test split."""
    from mmdet.datasets.api_wrappers import COCO, COCOeval
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.runner import Runner, load_checkpoint

    import plugins  # noqa: F401
    register_all_modules()
    cfg = Config.fromfile(config)
    loader = Runner.build_dataloader(cfg.test_dataloader)
    ann_file = cfg.test_evaluator.get('ann_file') or osp.join(
        cfg.test_dataloader.dataset.get('data_root', ''), cfg.test_dataloader.dataset.ann_file)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann_file)
    label_to_cat = sorted(gt.getCatIds())
    out = []
    for ckpt in checkpoints:
        model = MODELS.build(copy.deepcopy(cfg.model))
        load_checkpoint(model, ckpt, map_location='cpu', strict=False, logger='silent')
        model.eval()
        dets = []
        with torch.no_grad():
            for batch in loader:
                for s in model.test_step(batch):
                    p = s.pred_instances
                    for box, score, label in zip(p.bboxes.tolist(), p.scores.tolist(),
                                                 p.labels.tolist()):
                        dets.append(
                            dict(
                                image_id=s.img_id,
                                category_id=label_to_cat[label],
                                bbox=[box[0], box[1], box[2] - box[0], box[3] - box[1]],
                                score=score))
        with contextlib.redirect_stdout(io.StringIO()):
            res = gt.loadRes(dets) if dets else COCO()
            ev = COCOeval(gt, res, 'bbox')
            ev.evaluate()
            ev.accumulate()
        out.append(ap_per_threshold(ev.eval['precision']))
    return out


def main(argv: Optional[Sequence[str]] = None) -> None:
    from report import markdown_table
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoints', nargs='+')
    parser.add_argument('--labels', nargs='+', help='row names (default: the checkpoint paths)')
    args = parser.parse_args(argv)
    if args.labels and len(args.labels) != len(args.checkpoints):
        parser.error(f'{len(args.labels)} labels for {len(args.checkpoints)} checkpoints')
    rows = evaluate(args.config, args.checkpoints)
    labels = args.labels or args.checkpoints
    print(
        markdown_table(
            ['checkpoint', *[f'AP@{t:.2f}' for t in IOU_THRESHOLDS], 'mAP'],
            [[n, *[round(float(v), 3)
                   for v in r], round(float(np.nanmean(r)), 3)] for n, r in zip(labels, rows)]))


if __name__ == '__main__':
    main()
