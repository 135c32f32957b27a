"""The demo: generate the embedded datasets, train, evaluate, write a report.

    python tools/demo.py                      # every stage
    python tools/demo.py --stages detection   # some stages
    python tools/demo.py --quick              # shortest schedules (smoke run)

Each stage writes its data under ``data/demo/`` (real on-disk formats), trains
through ``tools/train.py``, evaluates through ``tools/test.py`` and adds a
section with numbers and pictures to ``work_dirs/demo/REPORT.md``.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import platform
import re
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

from tqdm import tqdm  # noqa: E402

from plugins.core.report import (find_scalars, last_value, markdown_table,  # noqa: E402
                                 plot_curves, read_scalars)

_ITER = re.compile(r'Epoch\(train\)\s+\[(\d+)\]\[\s*(\d+)/(\d+)\]')
_TEST_ITER = re.compile(r'Epoch\((?:test|val)\)\s+\[\s*(\d+)/(\d+)\]')
_METRIC = re.compile(r'([\w/]+(?:mAP|mIoU|mDice|AP|Dice|HD95)[\w/]*):\s+(-?[\d.]+)')


class DemoContext:
    """Paths and options shared by the stages."""

    def __init__(self, out: str, data: str, quick: bool) -> None:
        self.out = out
        self.data = data
        self.quick = quick

    def run_tool(self, args: Sequence[str], log_name: str, desc: str,
                 total_iters: Optional[int] = None) -> str:
        """Run a tool as a subprocess with a progress bar; return its log.

        Raises:
            SystemExit: If the tool fails (the end of its log is printed).
        """
        log_path = osp.join(self.out, 'logs', log_name)
        os.makedirs(osp.dirname(log_path), exist_ok=True)
        cmd = [sys.executable, *args]
        lines: List[str] = []
        bar = tqdm(total=total_iters, desc=desc, unit='it', leave=True,
                   dynamic_ncols=True, file=sys.stdout)
        with open(log_path, 'w') as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True,
                                    env={**os.environ, 'PYTHONUNBUFFERED': '1'})
            for line in proc.stdout:
                log.write(line)
                lines.append(line)
                m = _ITER.search(line)
                if m and total_iters:
                    epoch, i, n = map(int, m.groups())
                    bar.n = min(total_iters, (epoch - 1) * n + i)
                    bar.refresh()
                m = None if total_iters else _TEST_ITER.search(line)
                if m:
                    bar.total = int(m.group(2))
                    bar.n = int(m.group(1))
                    bar.refresh()
            proc.wait()
        if proc.returncode == 0 and bar.total:
            bar.n = bar.total
            bar.refresh()
        bar.close()
        if proc.returncode != 0:
            tail = ''.join(lines[-30:])
            raise SystemExit(f'{desc} failed (exit {proc.returncode}); '
                             f'log {log_path}:\n{tail}')
        return ''.join(lines)


def parse_metrics(log: str) -> Dict[str, float]:
    """The last value of each metric printed in an mmengine log."""
    found: Dict[str, float] = {}
    for key, value in _METRIC.findall(log):
        found[key] = float(value)
    return found


# --------------------------------------------------------------------- stages
def stage_detection(ctx: DemoContext) -> str:
    """Stock mmdet RetinaNet on the COCO-format shapes data."""
    from plugins.core.demo_data import make_coco_shapes

    data_root = osp.join(ctx.data, 'coco')
    make_coco_shapes(data_root, seed=0)
    config = 'configs/demo/retinanet_r18_1xb8-8e_demo-coco.py'
    work_dir = osp.join(ctx.out, 'detection')
    epochs = 2 if ctx.quick else 8
    iters_per_epoch = 12  # 96 images, batch 8
    options = [f'data_root={data_root}/',
               f'train_dataloader.dataset.data_root={data_root}/',
               f'val_dataloader.dataset.data_root={data_root}/',
               f'test_dataloader.dataset.data_root={data_root}/',
               f'val_evaluator.ann_file={data_root}/annotations/instances_val.json',
               f'test_evaluator.ann_file={data_root}/annotations/instances_val.json',
               f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
               f'default_hooks.checkpoint.interval={epochs}']
    t0 = time.time()
    ctx.run_tool(['tools/train.py', config, '--work-dir', work_dir,
                  '--cfg-options', *options], 'detection_train.log',
                 'detection: train RetinaNet', epochs * iters_per_epoch)
    train_s = time.time() - t0
    ckpt = osp.join(work_dir, f'epoch_{epochs}.pth')
    test_log = ctx.run_tool(['tools/test.py', config, ckpt, '--work-dir',
                             osp.join(work_dir, 'test'), '--cfg-options', *options],
                            'detection_test.log', 'detection: evaluate (CocoMetric)')
    metrics = parse_metrics(test_log)
    rows = read_scalars(find_scalars(work_dir))
    curves = plot_curves({'RetinaNet-R18': rows}, ['loss', 'loss_cls', 'loss_bbox'],
                         osp.join(ctx.out, 'detection_loss.png'),
                         'Detection: training losses')
    pictures = draw_detections(config, ckpt, data_root, options,
                               osp.join(ctx.out, 'detection_predictions.png'))
    table = markdown_table(
        ['model', 'epochs', 'train time (s)', 'final loss', 'bbox mAP',
         'mAP@50', 'mAP@75'],
        [['RetinaNet R-18 FPN (mmdet config, scratch)', epochs, round(train_s, 1),
          last_value(rows, 'loss') or float('nan'),
          metrics.get('coco/bbox_mAP', float('nan')),
          metrics.get('coco/bbox_mAP_50', float('nan')),
          metrics.get('coco/bbox_mAP_75', float('nan'))]])
    return '\n'.join([
        '## Detection (COCO format, stock mmdet model)', '',
        f'`{config}` inherits `mmdet::retinanet/retinanet_r18_fpn_1x_coco.py`, '
        f'trained by `tools/train.py` on {data_root} (96 train / 24 val images, '
        '128x128, classes square and disc) and evaluated by `tools/test.py` with '
        "mmdet's `CocoMetric` (pycocotools).", '', table, '',
        f'![losses]({osp.basename(curves)})', '',
        f'![predictions]({osp.basename(pictures)})',
        '', 'Green: ground truth; red: predictions with score > 0.3.', ''])


def draw_detections(config: str, ckpt: str, data_root: str, options: List[str],
                    out_png: str, n: int = 6) -> str:
    """Predictions of the trained detector on the first ``n`` val images."""
    import json

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import mmcv
    from mmdet.apis import inference_detector, init_detector
    from mmengine.config import Config, DictAction

    import plugins  # noqa: F401

    cfg = Config.fromfile(osp.join(ROOT, config))
    ns = argparse.Namespace()
    DictAction(['--o'], 'o')(None, ns, options)
    cfg.merge_from_dict(ns.o)
    model = init_detector(cfg, ckpt, device='cpu')
    ann = json.load(open(osp.join(data_root, 'annotations', 'instances_val.json')))
    classes = [c['name'] for c in ann['categories']]
    fig, axes = plt.subplots(1, n, figsize=(2.4 * n, 2.6))
    for ax, info in zip(axes, ann['images'][:n]):
        path = osp.join(data_root, 'val', info['file_name'])
        img = mmcv.imread(path, channel_order='rgb')
        ax.imshow(img)
        for a in ann['annotations']:
            if a['image_id'] == info['id']:
                x, y, w, h = a['bbox']
                ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, ec='lime', lw=1.5))
        pred = inference_detector(model, path).pred_instances
        keep = pred.scores > 0.3
        for box, label, score in zip(pred.bboxes[keep], pred.labels[keep],
                                     pred.scores[keep]):
            x1, y1, x2, y2 = box.tolist()
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False,
                                       ec='red', lw=1.2))
            ax.text(x1, y1 - 2, f'{classes[int(label)]} {float(score):.2f}',
                    color='red', fontsize=6)
        ax.axis('off')
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


STAGES: Dict[str, Callable[[DemoContext], str]] = {
    'detection': stage_detection,
}


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description='Run the demo and write a report')
    parser.add_argument('--stages', nargs='+', choices=sorted(STAGES),
                        default=list(STAGES), help='which stages (default: all)')
    parser.add_argument('--out', default='work_dirs/demo', help='report folder')
    parser.add_argument('--data', default='data/demo', help='demo data folder')
    parser.add_argument('--quick', action='store_true', help='shortest schedules')
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    os.makedirs(args.out, exist_ok=True)
    ctx = DemoContext(args.out, args.data, args.quick)
    import torch
    sections = []
    t_all = time.time()
    for name in args.stages:
        print(f'== demo stage: {name}', flush=True)
        t0 = time.time()
        sections.append(STAGES[name](ctx))
        print(f'== {name} done in {time.time() - t0:.0f} s', flush=True)
    header = [
        '# Demo report', '',
        f'Generated by `tools/demo.py` in {time.time() - t_all:.0f} s on '
        f'{platform.processor() or platform.machine()} '
        f'({os.cpu_count()} cores), Python {platform.python_version()}, '
        f'torch {torch.__version__}, '
        f'{"CUDA " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"}.',
        '']
    report = '\n'.join(header + sections)
    path = osp.join(args.out, 'REPORT.md')
    with open(path, 'w') as f:
        f.write(report)
    print(f'report: {path}')
    return path


if __name__ == '__main__':
    main()
