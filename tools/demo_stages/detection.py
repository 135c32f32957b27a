"""Detection: stock mmdet RetinaNet on the COCO-format shapes data, and the picture of its predictions."""
from __future__ import annotations

import os.path as osp
import time
from typing import List

from .common import (DemoContext, coco_data, coco_header, coco_options, coco_row, markdown_table,
                     merged_config, plot_curves, train_and_eval)

#: position of the stage in a full demo
ORDER = 0


def run(ctx: DemoContext) -> str:
    """Stock mmdet RetinaNet on the COCO-format shapes data."""
    data_root = coco_data(ctx)
    config = 'configs/demo/retinanet_r18_1xb8-8e_demo-coco.py'
    epochs = 2 if ctx.quick else 8
    options = coco_options(data_root, epochs)
    run = train_and_eval(ctx, 'detection', config, options, epochs, 12)
    curves = plot_curves({'RetinaNet-R18': run['rows']}, ['loss', 'loss_cls', 'loss_bbox'],
                         osp.join(ctx.out, 'detection_loss.png'), 'Detection: training losses')
    pictures = draw_detections(config, run['ckpt'], data_root, options,
                               osp.join(ctx.out, 'detection_predictions.png'))
    table = markdown_table(coco_header(),
                           [coco_row('RetinaNet R-18 FPN (mmdet config, scratch)', epochs, run)])
    return '\n'.join([
        '## Detection (COCO format, stock mmdet model)', '',
        f'`{config}` inherits `mmdet::retinanet/retinanet_r18_fpn_1x_coco.py`, '
        f'trained by `tools/train.py` on {data_root} (96 train / 24 val images, '
        '128x128, classes square and disc) and evaluated by `tools/test.py` with '
        "mmdet's `CocoMetric` (pycocotools).", '', table, '', f'![losses]({osp.basename(curves)})',
        '', f'![predictions]({osp.basename(pictures)})', '',
        "Drawn by mmdet's `DetLocalVisualizer` (images enlarged 3x): ground truth on the "
        'left of each pair, predictions with score > 0.3 on the right.', ''
    ])


def draw_detections(config: str,
                    ckpt: str,
                    data_root: str,
                    options: List[str],
                    out_png: str,
                    n: int = 6,
                    scale: int = 3,
                    score_thr: float = 0.3) -> str:
    """Ground truth (left) and predictions (right) of the first ``n`` val images,
    drawn by mmdet's ``DetLocalVisualizer`` on ``scale``× enlarged images (so the
    labels are legible), stacked in one picture."""
    import json

    import mmcv
    import numpy as np
    import torch
    from mmdet.apis import inference_detector, init_detector
    from mmdet.visualization import DetLocalVisualizer
    from mmengine.structures import InstanceData

    import plugins  # noqa: F401

    model = init_detector(merged_config(config, options), ckpt, device='cpu')
    ann = json.load(open(osp.join(data_root, 'annotations', 'instances_val.json')))
    cat_to_label = {
        c['id']: i
        for i, c in enumerate(sorted(ann['categories'], key=lambda c: c['id']))
    }
    vis = DetLocalVisualizer(name=f'demo_detections_{time.time_ns()}', line_width=2)
    vis.dataset_meta = model.dataset_meta
    rows = []
    for info in ann['images'][:n]:
        path = osp.join(data_root, 'val', info['file_name'])
        result = inference_detector(model, path)
        gts = [a for a in ann['annotations'] if a['image_id'] == info['id']]
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in gts)],
                             dtype=torch.float32).reshape(-1, 4)
        result.gt_instances = InstanceData(
            bboxes=boxes * scale,
            labels=torch.tensor([cat_to_label[a['category_id']] for a in gts], dtype=torch.long))
        result.pred_instances.bboxes = result.pred_instances.bboxes * scale
        img = mmcv.imread(path, channel_order='rgb')
        img = mmcv.imrescale(img, scale, interpolation='nearest')
        vis.add_datasample(
            'val',
            img,
            data_sample=result,
            draw_gt=True,
            draw_pred=True,
            show=False,
            pred_score_thr=score_thr)
        rows.append(vis.get_image())
    grid = np.concatenate([
        np.concatenate(rows[i:i + 2], axis=1)
        for i in range(0, len(rows), 2) if len(rows[i:i + 2]) == 2
    ],
                          axis=0) if len(rows) > 1 else rows[0]
    mmcv.imwrite(grid[..., ::-1], out_png)
    return out_png
