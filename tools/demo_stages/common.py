"""What every demo stage uses: the context, running the tools, reading their logs."""
from __future__ import annotations

import os
import os.path as osp
import re
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

from tqdm import tqdm

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from report import markdown_table  # noqa: F401
from report import find_scalars, last_value, plot_curves, read_scalars

__all__ = [
    'ROOT', 'DemoContext', 'parse_metrics', 'coco_options', 'train_and_eval', 'coco_row',
    'coco_header', 'coco_data', 'cfg_options', 'merged_config', 'markdown_table', 'plot_curves',
    'read_scalars', 'find_scalars', 'last_value'
]

_ITER = re.compile(r'Epoch\(train\)\s+\[(\d+)\]\[\s*(\d+)/(\d+)\]')
_ITER_BASED = re.compile(r'Iter\(train\)\s+\[\s*(\d+)/(\d+)\]')
_TEST_ITER = re.compile(r'Epoch\((?:test|val)\)\s+\[\s*(\d+)/(\d+)\]')
_METRIC = re.compile(
    r'([\w/]*(?:mAP|IoU|mDice|AP|Dice|HD95|dice|hd95|pr_auc|/ap)[\w/]*):\s+(-?[\d.]+)')


class DemoContext:
    """Paths and options shared by the stages."""

    def __init__(self, out: str, data: str, quick: bool, reuse: bool = False) -> None:
        self.out = out
        self.data = data
        self.quick = quick
        self.reuse = reuse

    def run_tool(self,
                 args: Sequence[str],
                 log_name: str,
                 desc: str,
                 total_iters: Optional[int] = None) -> str:
        """Run a tool as a subprocess with a progress bar; return its log.

        Raises:
            SystemExit: If the tool fails (the end of its log is printed).
        """
        log_path = osp.join(self.out, 'logs', log_name)
        os.makedirs(osp.dirname(log_path), exist_ok=True)
        cmd = [sys.executable, *args]
        lines: List[str] = []
        bar = tqdm(
            total=total_iters,
            desc=desc,
            unit='it',
            leave=True,
            dynamic_ncols=True,
            file=sys.stdout)
        with open(log_path, 'w') as log:
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={
                    **os.environ, 'PYTHONUNBUFFERED': '1'
                })
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


def coco_options(data_root: str, epochs: int) -> List[str]:
    """--cfg-options pointing a demo detection config at ``data_root``."""
    ann = f'{data_root}/annotations/instances_val.json'
    return [
        f'train_dataloader.dataset.data_root={data_root}/',
        f'val_dataloader.dataset.data_root={data_root}/',
        f'test_dataloader.dataset.data_root={data_root}/', f'val_evaluator.ann_file={ann}',
        f'test_evaluator.ann_file={ann}', f'train_cfg.max_epochs={epochs}',
        f'train_cfg.val_interval={epochs}', f'default_hooks.checkpoint.interval={epochs}'
    ]


def train_and_eval(ctx: DemoContext,
                   name: str,
                   config: str,
                   options: List[str],
                   epochs: int,
                   iters_per_epoch: int,
                   by_epoch: bool = True) -> Dict:
    """Train with tools/train.py, evaluate with tools/test.py (``by_epoch=False``:
    ``epochs`` counts iterations and ``iters_per_epoch`` is 1)."""
    work_dir = osp.join(ctx.out, name)
    ckpt = osp.join(work_dir, f'epoch_{epochs}.pth' if by_epoch else f'iter_{epochs}.pth')
    test_log = osp.join(ctx.out, 'logs', f'{name}_test.log')
    if ctx.reuse and osp.isfile(ckpt) and osp.isfile(test_log):
        with open(test_log) as f:  # a finished run of an earlier, interrupted demo
            metrics = parse_metrics(f.read())
        if metrics:
            return dict(
                metrics=metrics,
                rows=read_scalars(find_scalars(work_dir)),
                train_s=float('nan'),
                ckpt=ckpt,
                work_dir=work_dir)
    t0 = time.time()
    ctx.run_tool(['tools/train.py', config, '--work-dir', work_dir, '--cfg-options', *options],
                 f'{name}_train.log', f'{name}: train', epochs * iters_per_epoch)
    train_s = time.time() - t0
    log = ctx.run_tool([
        'tools/test.py', config, ckpt, '--work-dir',
        osp.join(work_dir, 'test'), '--cfg-options', *options
    ], f'{name}_test.log', f'{name}: evaluate')
    return dict(
        metrics=parse_metrics(log),
        rows=read_scalars(find_scalars(work_dir)),
        train_s=train_s,
        ckpt=ckpt,
        work_dir=work_dir)


def coco_row(label: str, epochs: int, run: Dict, loss_keys=('loss', )) -> list:
    nan = float('nan')
    m = run['metrics']
    losses = [last_value(run['rows'], k) for k in loss_keys]
    return [
        label, epochs, f"{run['train_s']:.0f}", *[nan if v is None else v for v in losses],
        m.get('coco/bbox_mAP', nan),
        m.get('coco/bbox_mAP_50', nan),
        m.get('coco/bbox_mAP_75', nan)
    ]


def coco_header(loss_keys=('loss', )) -> list:
    return (['model', 'epochs', 'train time (s)'] + [f'final {k}' for k in loss_keys] +
            ['bbox mAP', 'mAP@50', 'mAP@75'])


def coco_data(ctx: DemoContext) -> str:
    """The COCO-format shapes data of the detection stages (written once)."""
    from plugins.testing.coco_shapes import make_coco_shapes

    data_root = osp.join(ctx.data, 'coco')
    if not osp.isfile(osp.join(data_root, 'annotations', 'instances_val.json')):
        make_coco_shapes(data_root, seed=0)
    return data_root


def cfg_options(options: Sequence[str]) -> dict:
    """``key=value`` strings as ``--cfg-options`` parses them, as a dict."""
    import argparse

    from mmengine.config import DictAction

    ns = argparse.Namespace()
    DictAction(['--o'], 'o')(None, ns, list(options))
    return ns.o


def merged_config(config: str, options: Sequence[str]):
    """The config at ``config`` (relative to the repository) with ``--cfg-options`` applied."""
    from mmengine.config import Config

    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.merge_from_dict(cfg_options(options))
    return cfg
