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
_ITER_BASED = re.compile(r'Iter\(train\)\s+\[\s*(\d+)/(\d+)\]')
_TEST_ITER = re.compile(r'Epoch\((?:test|val)\)\s+\[\s*(\d+)/(\d+)\]')
_METRIC = re.compile(r'([\w/]*(?:mAP|IoU|mDice|AP|Dice|HD95|dice|hd95|pr_auc|/ap)[\w/]*):\s+(-?[\d.]+)')


class DemoContext:
    """Paths and options shared by the stages."""

    def __init__(self, out: str, data: str, quick: bool, reuse: bool = False) -> None:
        self.out = out
        self.data = data
        self.quick = quick
        self.reuse = reuse

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
                m = _ITER_BASED.search(line)
                if m and total_iters:
                    bar.n = min(total_iters, int(m.group(1)))
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
def coco_options(data_root: str, epochs: int) -> List[str]:
    """--cfg-options pointing a demo detection config at ``data_root``."""
    ann = f'{data_root}/annotations/instances_val.json'
    return [f'train_dataloader.dataset.data_root={data_root}/',
            f'val_dataloader.dataset.data_root={data_root}/',
            f'test_dataloader.dataset.data_root={data_root}/',
            f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}',
            f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
            f'default_hooks.checkpoint.interval={epochs}']


def train_and_eval(ctx: DemoContext, name: str, config: str, options: List[str],
                   epochs: int, iters_per_epoch: int, by_epoch: bool = True) -> Dict:
    """Train with tools/train.py, evaluate with tools/test.py (``by_epoch=False``:
    ``epochs`` counts iterations and ``iters_per_epoch`` is 1)."""
    work_dir = osp.join(ctx.out, name)
    ckpt = osp.join(work_dir, f'epoch_{epochs}.pth' if by_epoch else f'iter_{epochs}.pth')
    test_log = osp.join(ctx.out, 'logs', f'{name}_test.log')
    if ctx.reuse and osp.isfile(ckpt) and osp.isfile(test_log):
        with open(test_log) as f:  # a finished run of an earlier, interrupted demo
            metrics = parse_metrics(f.read())
        if metrics:
            return dict(metrics=metrics, rows=read_scalars(find_scalars(work_dir)),
                        train_s=float('nan'), ckpt=ckpt, work_dir=work_dir)
    t0 = time.time()
    ctx.run_tool(['tools/train.py', config, '--work-dir', work_dir,
                  '--cfg-options', *options], f'{name}_train.log',
                 f'{name}: train', epochs * iters_per_epoch)
    train_s = time.time() - t0
    log = ctx.run_tool(['tools/test.py', config, ckpt, '--work-dir',
                        osp.join(work_dir, 'test'), '--cfg-options', *options],
                       f'{name}_test.log', f'{name}: evaluate')
    return dict(metrics=parse_metrics(log), rows=read_scalars(find_scalars(work_dir)),
                train_s=train_s, ckpt=ckpt, work_dir=work_dir)


def _coco_row(label: str, epochs: int, run: Dict, loss_keys=('loss',)) -> list:
    nan = float('nan')
    m = run['metrics']
    losses = [last_value(run['rows'], k) for k in loss_keys]
    return [label, epochs, f"{run['train_s']:.0f}",
            *[nan if v is None else v for v in losses],
            m.get('coco/bbox_mAP', nan), m.get('coco/bbox_mAP_50', nan),
            m.get('coco/bbox_mAP_75', nan)]


def _coco_header(loss_keys=('loss',)) -> list:
    return (['model', 'epochs', 'train time (s)'] + [f'final {k}' for k in loss_keys] +
            ['bbox mAP', 'mAP@50', 'mAP@75'])


def coco_data(ctx: DemoContext) -> str:
    """The COCO-format shapes data of the detection stages (written once)."""
    from plugins.testing.coco_shapes import make_coco_shapes

    data_root = osp.join(ctx.data, 'coco')
    if not osp.isfile(osp.join(data_root, 'annotations', 'instances_val.json')):
        make_coco_shapes(data_root, seed=0)
    return data_root


def stage_detection(ctx: DemoContext) -> str:
    """Stock mmdet RetinaNet on the COCO-format shapes data."""
    data_root = coco_data(ctx)
    config = 'configs/demo/retinanet_r18_1xb8-8e_demo-coco.py'
    epochs = 2 if ctx.quick else 8
    options = coco_options(data_root, epochs)
    run = train_and_eval(ctx, 'detection', config, options, epochs, 12)
    curves = plot_curves({'RetinaNet-R18': run['rows']}, ['loss', 'loss_cls', 'loss_bbox'],
                         osp.join(ctx.out, 'detection_loss.png'),
                         'Detection: training losses')
    pictures = draw_detections(config, run['ckpt'], data_root, options,
                               osp.join(ctx.out, 'detection_predictions.png'))
    table = markdown_table(_coco_header(), [_coco_row(
        'RetinaNet R-18 FPN (mmdet config, scratch)', epochs, run)])
    return '\n'.join([
        '## Detection (COCO format, stock mmdet model)', '',
        f'`{config}` inherits `mmdet::retinanet/retinanet_r18_fpn_1x_coco.py`, '
        f'trained by `tools/train.py` on {data_root} (96 train / 24 val images, '
        '128x128, classes square and disc) and evaluated by `tools/test.py` with '
        "mmdet's `CocoMetric` (pycocotools).", '', table, '',
        f'![losses]({osp.basename(curves)})', '',
        f'![predictions]({osp.basename(pictures)})',
        '', "Drawn by mmdet's `DetLocalVisualizer` (images enlarged 3x): ground truth on the "
        'left of each pair, predictions with score > 0.3 on the right.', ''])


def stage_golsd(ctx: DemoContext) -> str:
    """Plain DINO vs GO-LSD DINO vs FDR alone (FGL and DDF weights 0): same
    data, backbone, schedule and seeds."""
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
    import golsd_experiments as gx

    epochs = 1 if ctx.quick else GOLSD_EPOCHS
    seeds = GOLSD_SEEDS[:1] if ctx.quick else GOLSD_SEEDS
    results = gx.run_rows(ctx, ['plain', 'golsd', 'fdr-only'], seeds, epochs,
                          lr_step=epochs if ctx.quick else GOLSD_LR_STEP,
                          val_every=1 if ctx.quick else GOLSD_VAL_EVERY,
                          backbone=GOLSD_BACKBONE, jobs=os.cpu_count() or 1)
    table = gx.summary_table(results, epochs)
    curve = gx.plot_map_curves(results, osp.join(ctx.out, 'golsd_map.png'),
                               'GO-LSD demo: bbox mAP against steps')
    first = {gx.ROWS[row][0]: runs[0]['rows'] for row, runs in results.items()}
    losses = plot_curves(first, ['loss_bbox', 'loss_iou', 'loss_fgl', 'd0.loss_ddf'],
                         osp.join(ctx.out, 'golsd_loss.png'),
                         f'GO-LSD: last-layer box losses, FGL and DDF (seed {seeds[0]})')
    kinds = gx.prediction_type_table({gx.ROWS[row][0]: runs[0] for row, runs in results.items()})
    spread = max(max(m) - min(m) for m in (
        [r['metrics'].get('coco/bbox_mAP', 0.0) for r in runs] for runs in results.values()))
    return '\n'.join([
        '## GO-LSD + FDR on DINO (COCO format)', '',
        'The same small DINO (`configs/golsd/dino-tiny_r18_1xb8-12e_demo-coco.py`) without '
        'and with the plugin (`..._golsd_...`: the detector and head types and the '
        'reference\'s VarifocalLoss), and the plugin with the FGL and DDF weights at 0 (FDR '
        'alone), same data, schedule, seeds '
        f'{", ".join(map(str, seeds))} and a ResNet-18 trained from scratch with the detector '
        '(with the backbone frozen, nothing but the transformer learns and the plugin is only '
        'level with plain DINO: docs/golsd.md). On 24 val images one seed says little (here the '
        f'seeds of one model differ by up to {spread:.3f} mAP), so the table gives the mean. '
        'Evaluated with `CocoMetric`. Every run has one thread (the runs go in parallel, one '
        'per core), so each seed\'s numbers equal a one-thread run of '
        '`python tools/golsd_experiments.py`, which reruns it with other rows, seeds and '
        'schedules.', '', table, '',
        f'![mAP against steps]({osp.basename(curve)})', '',
        f'![losses]({osp.basename(losses)})', '',
        f'Where the top-ranked predictions go (seed {seeds[0]}, last layer, each image\'s top '
        '2 x #GT predictions matched at IoU 0.5 in score order, '
        '`tools/analysis/golsd_outputs.py`):', '', kinds, '',
        'FGL rises while its IoU weights grow, then falls; DDF is 0 at the start (all layers '
        'equal) and grows as the layers diverge. docs/golsd.md has the ablations over more '
        'seeds, what each part does at this length, and a longer schedule.', ''])


GOLSD_SEEDS = (0, 1, 2)
GOLSD_BACKBONE = 'scratch'  # trained with the detector (golsd_experiments.py --backbone)
GOLSD_LR_STEP = 10
GOLSD_VAL_EVERY = 3  # epochs between evaluations: the mAP-vs-steps curve
GOLSD_EPOCHS = 12


def draw_detections(config: str, ckpt: str, data_root: str, options: List[str],
                    out_png: str, n: int = 6, scale: int = 3, score_thr: float = 0.3) -> str:
    """Ground truth (left) and predictions (right) of the first ``n`` val images,
    drawn by mmdet's ``DetLocalVisualizer`` on ``scale``× enlarged images (so the
    labels are legible), stacked in one picture."""
    import json

    import mmcv
    import numpy as np
    import torch
    from mmdet.apis import inference_detector, init_detector
    from mmdet.visualization import DetLocalVisualizer
    from mmengine.config import Config, DictAction
    from mmengine.structures import InstanceData

    import plugins  # noqa: F401

    cfg = Config.fromfile(osp.join(ROOT, config))
    ns = argparse.Namespace()
    DictAction(['--o'], 'o')(None, ns, options)
    cfg.merge_from_dict(ns.o)
    model = init_detector(cfg, ckpt, device='cpu')
    ann = json.load(open(osp.join(data_root, 'annotations', 'instances_val.json')))
    cat_to_label = {c['id']: i for i, c in enumerate(sorted(ann['categories'],
                                                            key=lambda c: c['id']))}
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
        vis.add_datasample('val', img, data_sample=result, draw_gt=True, draw_pred=True,
                           show=False, pred_score_thr=score_thr)
        rows.append(vis.get_image())
    grid = np.concatenate([np.concatenate(rows[i:i + 2], axis=1) for i in range(0, len(rows), 2)
                           if len(rows[i:i + 2]) == 2], axis=0) if len(rows) > 1 else rows[0]
    mmcv.imwrite(grid[..., ::-1], out_png)
    return out_png


def draw_segmentation_slices(runs: List[tuple], out_png: str) -> str:
    """One test volume's most annotated axial slice: image, ground truth and the
    prediction of each ``(label, config, checkpoint, options)`` run (the
    model's own sliding-window ``predict``)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import torch
    from matplotlib.colors import ListedColormap
    from mmengine.config import Config, DictAction
    from mmengine.registry import MODELS
    from mmengine.runner import Runner, load_checkpoint

    import plugins  # noqa: F401

    panels, image, label = [], None, None
    for name, config, ckpt, options in runs:
        cfg = Config.fromfile(osp.join(ROOT, config))
        ns = argparse.Namespace()
        DictAction(['--o'], 'o')(None, ns, options)
        cfg.merge_from_dict(ns.o)
        model = MODELS.build(cfg.model)
        load_checkpoint(model, ckpt, map_location='cpu', logger='silent')
        model.eval()
        batch = next(iter(Runner.build_dataloader(cfg.test_dataloader)))
        with torch.no_grad():
            out = model.test_step(batch)[0]
            data = model.data_preprocessor(batch, False)
        if image is None:
            image = data['inputs'][0, 0].float()
            label = out['label'][0]
        panels.append((name, out['pred'][0]))
    z = int((label > 0).flatten(0, 1).sum(0).argmax())  # the most annotated axial slice
    cmap = ListedColormap(['black', '#e6550d', '#31a354', '#3182bd', '#756bb1'])
    cols = [('image', image[..., z], 'gray'), ('ground truth', label[..., z], cmap)]
    cols += [(name, pred[..., z], cmap) for name, pred in panels]
    fig, axes = plt.subplots(1, len(cols), figsize=(2.6 * len(cols), 2.9))
    for ax, (title, img, cm) in zip(axes, cols):
        kwargs = {} if cm == 'gray' else dict(vmin=0, vmax=cmap.N - 1, interpolation='nearest')
        ax.imshow(img.T.numpy(), cmap=cm, origin='lower', **kwargs)
        ax.set_title(title, fontsize=9)
        ax.axis('off')
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def stage_dsd(ctx: DemoContext) -> str:
    """DSD vs the same network without it: 3D MONAI DynUNet (MSD format) on the
    mmengine Runner and in MONAI's SupervisedTrainer; 2D mmseg UNet."""
    import json

    from plugins.testing.msd import make_msd_synthetic
    from plugins.testing.shapes2d import make_shapes2d

    task = osp.join(ctx.data, 'msd', 'Task90_Synthetic')
    if not osp.isfile(osp.join(task, 'dataset.json')):
        make_msd_synthetic(osp.dirname(task), osp.basename(task), num_train=10, num_test=2,
                           size=48, num_classes=3, seed=0)
    epochs = 2 if ctx.quick else DSD_EPOCHS
    opts = [f'{k}_dataloader.dataset.task_dir={task}' for k in ('train', 'val', 'test')]
    opts += [f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
             f'default_hooks.checkpoint.interval={epochs}']
    runs3d = [('DynUNet, Dice-CE (plain)', 'dsd3d_plain', 'configs/dsd/dynunet_1xb1-16e_msd-demo.py', []),
              ('DynUNet + DSD', 'dsd3d_dsd', 'configs/dsd/dynunet_dsd_1xb1-16e_msd-demo.py', []),
              ('DynUNet + DSD (lean)', 'dsd3d_lean', 'configs/dsd/dynunet_dsd_1xb1-16e_msd-demo.py',
               ['model.dsd.mode=lean'])]
    if ctx.quick:
        runs3d = runs3d[:2]
    rows, slices = [], []
    for label, name, config, extra in runs3d:
        run = train_and_eval(ctx, name, config, opts + extra, epochs, 8)
        slices.append((label, config, run['ckpt'], opts + extra))
        m = run['metrics']
        rows.append([label, 'mmengine Runner (tools/train.py)', f"{run['train_s']:.0f}",
                     m.get('msd/dice', float('nan')), m.get('msd/dice_c1', float('nan')),
                     m.get('msd/dice_c2', float('nan')), m.get('msd/hd95', float('nan'))])
    out_json = osp.join(ctx.out, 'dsd_supervised_trainer.json')
    ctx.run_tool(['tools/examples/dsd_supervised_trainer.py', '--task', task,
                  '--dsd', 'straightforward', '--epochs', str(2 if ctx.quick else 2 * epochs),
                  '--num-val', '2', '--json', out_json], 'dsd_supervised_trainer.log',
                 'dsd: MONAI SupervisedTrainer + DSD')
    with open(out_json) as f:
        v = json.load(f)
    rows.append(['DynUNet + DSD', 'MONAI SupervisedTrainer (example)', f"{v['train_s']:.0f}",
                 v['dice'], v['dice_c1'], v['dice_c2'], v['hd95']])
    table3d = markdown_table(['model', 'trained by', 'train time (s)', 'mean Dice', 'Dice c1',
                              'Dice c2', 'HD95 (voxels)'], rows)
    picture = draw_segmentation_slices(slices, osp.join(ctx.out, 'dsd_slices.png'))

    root2d = osp.join(ctx.data, 'shapes2d')
    if not osp.isdir(osp.join(root2d, 'ann_dir', 'val')):
        make_shapes2d(root2d, seed=0)
    iters = 20 if ctx.quick else DSD_2D_ITERS
    opts2d = [f'{k}_dataloader.dataset.data_root={root2d}' for k in ('train', 'val', 'test')]
    opts2d += [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
               f'default_hooks.checkpoint.interval={iters}', f'param_scheduler.0.end={iters}']
    rows2d = []
    for label, name, config in (
            ('UNet-FCN + aux head (upstream recipe)', 'dsd2d_plain',
             'configs/dsd/unet-s5-d16_fcn_1xb4-600it_demo-shapes2d-64x64.py'),
            ('UNet-FCN + DSD', 'dsd2d_dsd',
             'configs/dsd/unet-s5-d16_fcn_dsd_1xb4-600it_demo-shapes2d-64x64.py')):
        run = train_and_eval(ctx, name, config, opts2d, iters, 1, by_epoch=False)
        m = run['metrics']
        rows2d.append([label, iters, f"{run['train_s']:.0f}", m.get('mDice', float('nan')),
                       m.get('mIoU', float('nan'))])
    table2d = markdown_table(['model', 'iterations', 'train time (s)', 'mDice (%)', 'mIoU (%)'],
                             rows2d)
    return '\n'.join([
        '## DSD on U-shaped networks', '',
        f'**3D, MONAI DynUNet.** A synthetic task in the Medical Segmentation Decathlon layout '
        f'({task}: `dataset.json`, NIfTI `imagesTr/`, `labelsTr/`; 10 training volumes of 48³, '
        f'3 classes, 2 held out), MONAI transforms (random 32³ crops by label, flips, '
        f'rotations, intensity shift), AdamW 1e-3, {epochs} epochs. Evaluation: sliding-window '
        'inference, MONAI Dice and HD95 without background (HD95 in voxels). DSD is one `dsd=` '
        'key in the config (or two lines in a MONAI script); the network stays the stock '
        'DynUNet. The lean mode computes the same loss with less memory; it differs from the '
        'straightforward run only by float rounding in the gradients, accumulated over '
        'training.', '', table3d, '', f'![slices]({osp.basename(picture)})', '',
        'The first test volume, its most annotated axial slice: ground truth and each '
        "model's sliding-window prediction (class 1 orange, class 2 green).", '',
        f'**2D, mmseg UNet (FCN head).** Generated 64×64 images in mmseg\'s layout '
        f'({root2d}: `img_dir/`, `ann_dir/` PNGs; 48 train, 12 val, 3 classes, a 255 frame '
        'that is not annotated), base 16 channels, AdamW, batch 4. The DSD config is the '
        'plain one plus the three-line change (segmentor type, no auxiliary head, options).',
        '', table2d, ''])


def stage_macil(ctx: DemoContext) -> str:
    """MACIL-SD vs the same network with top-k MIL only, on XD-Violence-format data."""
    import numpy as np

    from plugins.core.report import plot_xy_curves
    from plugins.testing.xdviolence import make_xdviolence_synthetic
    from plugins.macil.functional import pr_curve

    root = osp.join(ctx.data, 'xdv')
    if not osp.isfile(osp.join(root, 'gt.npy')):
        make_xdviolence_synthetic(root, seed=0)
    epochs = 2 if ctx.quick else MACIL_EPOCHS
    base = [f'train_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}', f'test_evaluator.gt_file={root}/gt.npy',
            f'train_cfg.max_epochs={epochs}', f'default_hooks.checkpoint.interval={epochs}']
    rows, curves = [], {}
    gt = np.load(osp.join(root, 'gt.npy'))
    for label, name, config in (
            ('MACIL-SD (contrastive + self-distillation)', 'macil_sd',
             'configs/macil/macil-sd_1xb8-12e_demo-xdv.py'),
            ('same AV network, top-k MIL only', 'macil_mil',
             'configs/macil/mil-baseline_1xb8-12e_demo-xdv.py')):
        scores = osp.abspath(osp.join(ctx.out, f'{name}_frame_scores.npy'))
        run = train_and_eval(ctx, name, config, base + [f'test_evaluator.dump_scores={scores}'],
                             epochs, 30)
        m = run['metrics']
        rows.append([label, epochs, f"{run['train_s']:.0f}", m.get('xdv/pr_auc', float('nan')),
                     m.get('xdv/ap', float('nan'))])
        curves[f"{label.split(' (')[0]} (PR-AUC {m.get('xdv/pr_auc', float('nan')):.3f})"] = \
            pr_curve(np.load(scores), gt)
    png = plot_xy_curves(curves, osp.join(ctx.out, 'macil_pr_curves.png'), 'recall',
                         'precision', 'frame-level precision-recall (test set)')
    table = markdown_table(['model', 'epochs', 'train time (s)', 'PR-AUC ("AP")', 'step AP'],
                           rows)
    return '\n'.join([
        '## MACIL-SD on XD-Violence-format features', '',
        f'Generated features in the XD-Violence layout ({root}: `RGB/`, `RGBTest/` five I3D '
        'crops per video, `vggish-features/`, `rgb.list`/`audio.list`, frame-level `gt.npy`; '
        '48 training and 14 test videos). The planted signal: violent events raise both '
        'visual and audio features; normal videos carry the same visual pattern with quiet '
        'audio, so the audio stream is needed. Trained by `tools/train.py` (MACIL-SD: two '
        'optimizers, λ ramp, per-epoch EMA from the visual-only teacher), scored by '
        '`tools/test.py` over all test frames. PR-AUC is the headline "AP" of the '
        'literature; step AP is scikit-learn\'s average precision: different numbers.', '',
        table, '', f'![PR curves]({osp.basename(png)})', ''])


def stage_slidr(ctx: DemoContext) -> str:
    """SLidR pre-training on a synthetic nuScenes tree, then linear probes of the
    pre-trained and of a random-init student."""
    import math

    import numpy as np

    from plugins.testing.nuscenes import make_nuscenes_synthetic

    root = osp.join(ctx.data, 'nuscenes')
    if not osp.isfile(osp.join(root, 'v1.0-mini', 'lidarseg.json')):
        make_nuscenes_synthetic(root, samples_per_scene=4, seed=0)
    epochs = 2 if ctx.quick else SLIDR_PRETRAIN_EPOCHS
    pre_dir = osp.join(ctx.out, 'slidr_pretrain')
    t0 = time.time()
    ctx.run_tool(['tools/train.py', 'configs/slidr/slidr_tiny-unet_1xb2-8e_demo-nuscenes.py',
                  '--work-dir', pre_dir, '--cfg-options',
                  f'train_dataloader.dataset.data_root={root}', f'train_cfg.max_epochs={epochs}',
                  f'param_scheduler.0.T_max={epochs}',
                  f'default_hooks.checkpoint.interval={epochs}'],
                 'slidr_pretrain.log', 'slidr: pre-train', epochs * 2)
    pre_s = time.time() - t0
    rows = [r for r in read_scalars(find_scalars(pre_dir)) if 'kept' in r]
    excess = [r['loss'] - math.log(r['kept']) for r in rows]
    half = max(1, len(excess) // 4)
    probe_epochs = 2 if ctx.quick else SLIDR_PROBE_EPOCHS
    opts = [f'{k}_dataloader.dataset.data_root={root}' for k in ('train', 'val', 'test')]
    opts += [f'train_cfg.max_epochs={probe_epochs}', f'train_cfg.val_interval={probe_epochs}',
             f'default_hooks.checkpoint.interval={probe_epochs}',
             f'param_scheduler.0.T_max={probe_epochs}']
    table_rows = []
    for label, name, pretrained in (('random init', 'slidr_probe_random', 'None'),
                                    ('SLidR pre-trained', 'slidr_probe_slidr',
                                     osp.join(pre_dir, f'epoch_{epochs}.pth'))):
        run = train_and_eval(ctx, name,
                             'configs/slidr/tiny-unet_linear-probe_1xb2-8e_demo-nuscenes.py',
                             opts + [f'model.pretrained={pretrained}'], probe_epochs, 2)
        m = run['metrics']
        table_rows.append([label, probe_epochs] + [m.get(f'lidarseg/{k}', float('nan')) for k in (
            'mIoU_present', 'IoU_driveable_surface', 'IoU_car', 'IoU_manmade', 'IoU_vegetation')])
    table = markdown_table(['linear probe from', 'epochs', 'mIoU (present classes)',
                            'driveable surface', 'car', 'manmade', 'vegetation'], table_rows)
    kitti_table = _slidr_kitti(ctx, osp.join(pre_dir, f'epoch_{epochs}.pth'))
    picture = _slidr_picture(ctx, root)
    return '\n'.join([
        '## SLidR: image-to-lidar distillation', '',
        f'A synthetic nuScenes-lidarseg `v1.0-mini` tree ({root}; loaded by the official '
        'devkit): a 32-beam lidar ray-cast into cars, poles and bushes along a road, six '
        'cameras rendered from the labelled points, 4 keyframes in `mini_train`, 4 in '
        '`mini_val`. Pre-training: frozen random-init ResNet-50 teacher (no weights can be '
        'downloaded here), a small sparse U-Net student, superpixels from `slic_fast`, '
        f'{epochs} epochs ({pre_s:.0f} s). The InfoNCE loss minus its chance level (log of the '
        f'superpixels kept) went from {np.mean(excess[:half]):+.2f} (first quarter of the steps) '
        f'to {np.mean(excess[-half:]):+.2f} (last quarter). Then a linear probe (only the '
        'last layer trains, frozen batch norm) on the lidarseg labels, scored on all '
        '`mini_val` points; IoU of the four classes present.', '', table, '',
        'Fine-tuning on a synthetic SemanticKITTI tree (`dataset/sequences/XX/velodyne`, '
        '`labels`, `calib.txt`; 3 scans per training sequence, 08 for validation), from '
        'scratch and from the same pre-trained student:', '', kitti_table, '',
        f'![pairings]({osp.basename(picture)})', '',
        'The coloured points of the right panel are the "superpoints": the lidar points '
        'that project into each superpixel (`slidr_pairings.ply` holds them for a 3D viewer).',
        ''])


def _slidr_kitti(ctx: DemoContext, pretrained: str) -> str:
    """Short SemanticKITTI fine-tunes: from scratch and from the pre-trained student."""
    from plugins.testing.semantickitti import make_semantickitti_synthetic

    root = osp.join(ctx.data, 'semantickitti')
    if not osp.isdir(osp.join(root, 'dataset', 'sequences', '08')):
        make_semantickitti_synthetic(root, scans_per_sequence=3, seed=0)
    epochs = 1 if ctx.quick else SLIDR_KITTI_EPOCHS
    opts = [f'{k}_dataloader.dataset.data_root={root}' for k in ('train', 'val', 'test')]
    opts += [f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
             f'default_hooks.checkpoint.interval={epochs}', f'param_scheduler.0.T_max={epochs}']
    rows = []
    for label, name, ckpt in (('from scratch', 'slidr_kitti_scratch', 'None'),
                              ('from the SLidR student', 'slidr_kitti_slidr', pretrained)):
        run = train_and_eval(ctx, name, 'configs/slidr/tiny-unet_finetune_1xb2-4e_demo-semantickitti.py',
                             opts + [f'model.pretrained={ckpt}'], epochs, 15)
        m = run['metrics']
        rows.append([label, epochs] + [m.get(f'lidarseg/{k}', float('nan')) for k in (
            'mIoU_present', 'IoU_road', 'IoU_sidewalk', 'IoU_car', 'IoU_building',
            'IoU_vegetation')])
    return markdown_table(['fine-tune from', 'epochs', 'mIoU (present classes)', 'road',
                           'sidewalk', 'car', 'building', 'vegetation'], rows)


def _slidr_picture(ctx: DemoContext, root: str) -> str:
    """Superpixels, paired points and their bird's-eye view for one camera."""
    import numpy as np
    import torch

    from plugins.slidr.functional import cylindrical_voxelize
    from plugins.slidr.mmengine import NuScenesSLidRDataset
    from plugins.slidr.views import plot_pairings, slot_colours, write_cloud

    ds = NuScenesSLidRDataset(root, split='mini_val', crop=(225, 400), augment=False,
                              superpixel_size=256)
    sample = ds.nusc.get('sample', ds.samples[0])
    lidar = ds.nusc.get('sample_data', sample['data']['LIDAR_TOP'])
    points = np.fromfile(osp.join(root, lidar['filename']), np.float32).reshape(-1, 5)
    item = ds[0]
    pairs = item['pairs'].numpy()
    cam0 = pairs[pairs[:, 1] == 0]
    image = item['images'][0].numpy().transpose(1, 2, 0)
    sp = item['superpixels'][0].numpy()
    slots = sp[cam0[:, 2], cam0[:, 3]]
    # pairings hold voxel rows; take each voxel's first point for the 3D view
    _, _, first = cylindrical_voxelize(torch.from_numpy(np.ascontiguousarray(points[:, :3])))
    xyz = points[first.numpy()[cam0[:, 0]], :3]
    write_cloud(osp.join(ctx.out, 'slidr_pairings.ply'), xyz, slot_colours(slots))
    return plot_pairings(image, sp, cam0[:, 2], cam0[:, 3], xyz, slots,
                         osp.join(ctx.out, 'slidr_pairings.png'),
                         'CAM_FRONT of a mini_val keyframe')


DSD_EPOCHS = 16
DSD_2D_ITERS = 600
MACIL_EPOCHS = 12
SLIDR_PRETRAIN_EPOCHS = 12
SLIDR_PROBE_EPOCHS = 8
SLIDR_KITTI_EPOCHS = 4


STAGES: Dict[str, Callable[[DemoContext], str]] = {
    'detection': stage_detection,
    'golsd': stage_golsd,
    'dsd': stage_dsd,
    'macil': stage_macil,
    'slidr': stage_slidr,
}


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description='Run the demo and write a report')
    parser.add_argument('--stages', nargs='+', choices=sorted(STAGES),
                        default=list(STAGES), help='which stages (default: all)')
    parser.add_argument('--out', default='work_dirs/demo', help='report folder')
    parser.add_argument('--data', default='data/demo', help='demo data folder')
    parser.add_argument('--quick', action='store_true', help='shortest schedules')
    parser.add_argument('--reuse', action='store_true',
                        help='keep the finished runs (checkpoint and test log) of an earlier, '
                        'interrupted demo in --out instead of training them again')
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    os.makedirs(args.out, exist_ok=True)
    ctx = DemoContext(args.out, args.data, args.quick, args.reuse)
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
