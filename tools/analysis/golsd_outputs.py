"""Per-output evaluation of a DINO / GO-LSD DINO checkpoint.

    python tools/analysis/golsd_outputs.py CONFIG CHECKPOINT [--cfg-options k=v ...]

For the pre boxes (GO-LSD only) and every decoder layer it prints the COCO
bbox mAP and a breakdown of each image's top ``2 × #GT`` predictions, matched
greedily in score order as COCO does at IoU 0.5: true positives, duplicates
(a same-class ground truth already taken by a higher score), wrong class and
background. Two crossed rows (the last layer's scores with the layer-0 boxes
and the reverse) tell classification from localisation.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os.path as osp
import sys
from typing import Dict, List, Tuple

import torch
from torch import Tensor

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(1, osp.join(ROOT, 'tools'))  # the tools' shared modules

FP_TYPES = ('tp', 'duplicate', 'wrong_class', 'background')
#: the columns of an :func:`evaluate` row after the output's name
COLUMNS = ('bbox mAP', 'mAP@50', 'mAP@75', 'TP', 'duplicates', 'wrong class', 'background',
           'duplicates / GT')


def prediction_types(boxes: Tensor,
                     scores: Tensor,
                     labels: Tensor,
                     gt_boxes: Tensor,
                     gt_labels: Tensor,
                     iou_thr: float = 0.5,
                     top: int = None) -> Dict[str, int]:
    """Sort the ``top`` highest-scoring predictions of one image into types.

    In score order, a prediction takes the unclaimed same-class ground truth
    it overlaps most (IoU ≥ ``iou_thr``): a true positive. Otherwise it is a
    duplicate (it overlaps a same-class ground truth already taken), a wrong
    class (it overlaps a ground truth of another class) or background.

    Args:
        boxes (Tensor): ``(N, 4)`` xyxy predictions; ``scores``, ``labels`` ``(N,)``.
        gt_boxes (Tensor): ``(G, 4)`` xyxy; ``gt_labels`` ``(G,)``.
        iou_thr (float): Overlap needed to count as on a ground truth.
        top (int, optional): Keep this many highest scores (all when None).

    Returns:
        dict: Counts for ``tp``, ``duplicate``, ``wrong_class``, ``background``.

    Raises:
        ValueError: On boxes that are not ``(·, 4)``.
    """
    from mmdet.structures.bbox import bbox_overlaps
    if boxes.shape[-1] != 4 or gt_boxes.shape[-1] != 4:
        raise ValueError(f'boxes must be (N, 4) and (G, 4), got {tuple(boxes.shape)} '
                         f'and {tuple(gt_boxes.shape)}')
    counts = dict.fromkeys(FP_TYPES, 0)
    order = scores.argsort(descending=True)[:top]
    if not len(gt_boxes):
        counts['background'] = len(order)
        return counts
    iou = bbox_overlaps(boxes[order].float(), gt_boxes.float())  # (n, G)
    taken = torch.zeros(len(gt_boxes), dtype=torch.bool)
    for row, j in enumerate(order.tolist()):
        over = iou[row] >= iou_thr
        same = over & (gt_labels == labels[j])
        free = same & ~taken
        if free.any():
            taken[torch.where(free, iou[row], torch.full_like(iou[row], -1)).argmax()] = True
            counts['tp'] += 1
        elif same.any():
            counts['duplicate'] += 1
        elif over.any():
            counts['wrong_class'] += 1
        else:
            counts['background'] += 1
    return counts


def _outputs(model, data) -> Dict[str, Tuple[Tensor, Tensor]]:
    """``name -> (scores (B, Q, C), boxes (B, Q, 4))`` of every output."""
    head = model.bbox_head
    feats = model.extract_feat(data['inputs'])
    hi = model.forward_transformer(feats, data['data_samples'])
    if 'all_layers_boxes' in hi:
        cls, boxes = head(
            hi['hidden_states'],
            hi['references'],
            all_layers_boxes=hi['all_layers_boxes'],
            all_layers_corners=hi.get('all_layers_corners'))
        out = {'pre (layer-0 scores)': (cls[0], hi['pre_boxes'])}
    else:
        cls, boxes = head(hi['hidden_states'], hi['references'])
        out = {}
    for i in range(cls.shape[0]):
        out[f'layer {i}'] = (cls[i], boxes[i])
    out['last scores + layer-0 boxes'] = (cls[-1], boxes[0])
    out['layer-0 scores + last boxes'] = (cls[0], boxes[-1])
    return out


def evaluate(config: str, checkpoint: str, options: Dict) -> List[list]:
    """Rows ``[output, mAP, mAP@50, mAP@75, tp, duplicate, wrong_class, background,
    duplicates per GT]`` over the test split."""
    from mmdet.registry import METRICS, MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.runner import Runner, load_checkpoint

    import plugins  # noqa: F401
    register_all_modules()
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(options or {})
    model = MODELS.build(cfg.model)
    load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    model.eval()
    loader = Runner.build_dataloader(cfg.test_dataloader)
    results: Dict[str, list] = {}
    with torch.no_grad():
        for batch in loader:
            data = model.data_preprocessor(batch, False)
            samples = data['data_samples']
            metas = [s.metainfo for s in samples]
            for name, (cls, boxes) in _outputs(model, data).items():
                preds = model.bbox_head.predict_by_feat(
                    cls[None], boxes[None], batch_img_metas=metas, rescale=True)
                results.setdefault(name, []).extend(zip(samples, preds))
    rows = []
    for name, pairs in results.items():
        metric = METRICS.build(copy.deepcopy(cfg.test_evaluator))
        metric.dataset_meta = loader.dataset.metainfo
        counts, n_gt, batch = dict.fromkeys(FP_TYPES, 0), 0, []
        for sample, pred in pairs:
            gt = sample.gt_instances
            scale = gt.bboxes.new_tensor(sample.metainfo['scale_factor']).repeat(2)
            gt_boxes = gt.bboxes / scale  # back to the original image, as the predictions
            for k, v in prediction_types(
                    pred.bboxes, pred.scores, pred.labels, gt_boxes, gt.labels,
                    top=2 * len(gt_boxes)).items():
                counts[k] += v
            n_gt += len(gt_boxes)
            batch.append(
                dict(
                    img_id=sample.img_id,
                    ori_shape=sample.ori_shape,
                    pred_instances=dict(bboxes=pred.bboxes, scores=pred.scores,
                                        labels=pred.labels)))
        metric.process({}, batch)
        with contextlib.redirect_stdout(io.StringIO()):
            m = metric.compute_metrics(metric.results)
        rows.append([
            name, m['bbox_mAP'], m['bbox_mAP_50'], m['bbox_mAP_75'], *counts.values(),
            counts['duplicate'] / max(n_gt, 1)
        ])
    return rows


def main() -> None:
    from mmengine.config import DictAction
    from report import markdown_table
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    args = parser.parse_args()
    rows = evaluate(args.config, args.checkpoint, args.cfg_options)
    print(markdown_table(['output', *COLUMNS], rows))


if __name__ == '__main__':
    main()
