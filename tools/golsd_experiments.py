"""Plain DINO vs GO-LSD DINO variants on the demo data: seeds, mAP against steps.

    python tools/golsd_experiments.py                              # plain vs golsd, seeds 0 1 2
    python tools/golsd_experiments.py --rows golsd-focal fdr-only --seeds 0
    python tools/golsd_experiments.py --rows plain golsd --epochs 36 --lr-step 30
    python tools/golsd_experiments.py --rows plain golsd --backbone frozen   # transformer only
    python tools/golsd_experiments.py --rows plain golsd --epochs 36 --seeds 0 1 2 3 4 \
        --collect work_dirs/a work_dirs/b --out work_dirs/merged   # runs made in parallel

Every row is the small DINO of ``configs/golsd/`` with one change. Its
ResNet-18 is trained from scratch with the detector (``--backbone scratch``,
the demo's protocol), or starts from the demo's detection stage (trained first
if missing), frozen (``frozen``) or trained at a tenth of the learning rate
(``finetune``). Each run is trained by
``tools/train.py`` and evaluated every ``--val-every`` epochs and at the end by
``tools/test.py``. The same seeds run for every row. It prints the mean and the
per-seed bbox mAP and writes ``golsd_map.png`` (mAP against training steps)
and ``golsd_experiments.md`` to ``--out``. The rows of docs/golsd.md come from
this script.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import statistics
import sys
from typing import Dict, List, Sequence, Tuple

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import demo  # (tools/demo.py: data, training and evaluation helpers)

ITERS_PER_EPOCH = 12  # 96 training images, batch 8
PLAIN = 'configs/golsd/dino-tiny_r18_1xb8-12e_demo-coco.py'
GOLSD = 'configs/golsd/dino-tiny_r18_golsd_1xb8-12e_demo-coco.py'
_FOCAL = dict(
    bbox_head=dict(
        loss_cls=dict(
            _delete_=True,
            type='FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=1.0)))
_NO_FGL = dict(bbox_head=dict(loss_fgl=dict(loss_weight=0.0)))
_NO_DDF = dict(bbox_head=dict(loss_ddf=dict(loss_weight=0.0)))
_LQE = dict(bbox_head=dict(lqe=dict(k=4, hidden=64)))
_UP1 = dict(golsd=dict(up=1.0))
_OWN_BOXES = dict(bbox_head=dict(box_matches='own'))

#: row name -> (label, base config, ``model`` overrides merged onto the base)
ROWS: Dict[str, Tuple[str, str, Tuple[dict, ...]]] = {
    'plain': ('DINO (plain, Focal)', PLAIN, ()),
    'golsd': ('DINO + GO-LSD/FDR (VFL, the plugin default)', GOLSD, ()),
    'golsd-focal': ('DINO + GO-LSD/FDR with Focal', GOLSD, (_FOCAL, )),
    'fdr-only': ('FDR only (VFL; FGL, DDF weights 0)', GOLSD, (_NO_FGL, _NO_DDF)),
    'fdr-only-focal': ('FDR only with Focal', GOLSD, (_FOCAL, _NO_FGL, _NO_DDF)),
    'fgl-only': ('FDR + FGL (VFL; DDF weight 0)', GOLSD, (_NO_DDF, )),
    'fgl-only-focal': ('FDR + FGL with Focal', GOLSD, (_FOCAL, _NO_DDF)),
    'ddf-only': ('FDR + DDF (VFL; FGL weight 0)', GOLSD, (_NO_FGL, )),
    'ddf-only-focal': ('FDR + DDF with Focal', GOLSD, (_FOCAL, _NO_FGL)),
    'golsd-lqe': ('DINO + GO-LSD/FDR + LQE (location-quality scores)', GOLSD, (_LQE, )),
    'golsd-up1': ('DINO + GO-LSD/FDR, wider bins (up=1.0)', GOLSD, (_UP1, )),
    'fdr-only-own':
    ('FDR only, box losses on own matches (no GO union)', GOLSD, (_NO_FGL, _NO_DDF, _OWN_BOXES)),
}

#: ``--backbone`` choices: how the ResNet-18 of every row starts and trains
BACKBONES = ('frozen', 'finetune', 'scratch')


def backbone_override(ctx: 'demo.DemoContext', mode: str = 'scratch') -> dict:
    """``model`` override for the backbone of every row.

    ``scratch`` trains the base config's randomly initialised ResNet-18 (the
    demo's protocol); ``frozen`` starts from the detection stage's weights
    (run if missing) and freezes them; ``finetune`` starts there and trains
    them (at a tenth of the learning rate, set by :func:`run_rows`), as DINO
    and D-FINE train pretrained backbones.

    Raises:
        ValueError: On an unknown ``mode``.
    """
    if mode not in BACKBONES:
        raise ValueError(f'backbone mode must be one of {BACKBONES}, got {mode!r}')
    if mode == 'scratch':
        return {}
    ckpt = osp.join(ctx.out, 'detection', f'epoch_{2 if ctx.quick else 8}.pth')
    if not osp.isfile(ckpt):
        demo.STAGES['detection'](ctx)
    return dict(
        backbone=dict(
            init_cfg=dict(
                _delete_=True, type='Pretrained', prefix='backbone.', checkpoint=osp.abspath(ckpt)),
            frozen_stages=4 if mode == 'frozen' else -1,
            norm_eval=True))


def merge_overrides(overrides: Sequence[dict]) -> dict:
    """One ``model`` dict from several (later ones win key by key).

    A config file keeps only its last ``model = ...`` assignment, so the
    overrides of a row must become one dict.
    """
    merged: dict = {}
    for override in overrides:
        for key, value in override.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = merge_overrides([merged[key], value])
            else:
                merged[key] = value
    return merged


def write_config(ctx: 'demo.DemoContext', name: str, base: str, overrides: Sequence[dict]) -> str:
    """A config inheriting ``base`` with ``model = <merged overrides>`` under
    ``<out>/configs``."""
    folder = osp.join(ctx.out, 'configs')
    os.makedirs(folder, exist_ok=True)
    path = osp.join(folder, f'{name}.py')
    with open(path, 'w') as f:
        f.write(f'_base_ = {osp.join(demo.ROOT, base)!r}\n'
                f'model = {merge_overrides(overrides)!r}\n')
    return path


def map_curve(rows: Sequence[dict]) -> Tuple[List[int], List[float]]:
    """``(steps, bbox mAP)`` of the evaluations logged during training."""
    pts = [(int(r['step']) * ITERS_PER_EPOCH, r['coco/bbox_mAP']) for r in rows
           if 'coco/bbox_mAP' in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def run_rows(ctx: 'demo.DemoContext',
             rows: Sequence[str],
             seeds: Sequence[int],
             epochs: int,
             lr_step: int,
             val_every: int,
             backbone: str = 'scratch',
             jobs: int = 1) -> Dict[str, List[dict]]:
    """Train and evaluate every row with every seed.

    Args:
        jobs (int): Runs at a time. Above 1, every run gets one thread
            (``OMP_NUM_THREADS=1``), so its numbers do not depend on how the
            runs were scheduled: they equal those of a one-thread run alone.

    Returns:
        dict: Row name to one run dict per seed (``metrics``, ``rows`` of
        logged scalars, ``train_s``, ``ckpt``, ``config``, ``seed``,
        ``options``).

    Raises:
        KeyError: On an unknown row name.
        ValueError: On ``jobs < 1``.
    """
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise KeyError(f'unknown rows {unknown}; known: {sorted(ROWS)}')
    if jobs < 1:
        raise ValueError(f'jobs must be >= 1, got {jobs}')
    data_root = demo.coco_data(ctx)
    model_override = backbone_override(ctx, backbone)
    options = demo.coco_options(data_root, epochs) + [
        f'train_cfg.val_interval={min(val_every, epochs)}', f'param_scheduler.0.end={epochs}',
        f'param_scheduler.0.milestones=[{lr_step}]'
    ]
    if backbone == 'finetune':
        options.append('optim_wrapper.paramwise_cfg.custom_keys.backbone.lr_mult=0.1')
    configs = {
        row: write_config(ctx, f'golsd_{row}', ROWS[row][1], (model_override, ) + ROWS[row][2])
        for row in rows
    }

    def one(row: str, seed: int) -> dict:
        run = demo.train_and_eval(ctx, f'golsd_{row}_e{epochs}_s{seed}', configs[row],
                                  options + [f'randomness.seed={seed}'], epochs, ITERS_PER_EPOCH)
        return dict(run, config=configs[row], seed=seed, options=options)

    todo = [(row, seed) for row in rows for seed in seeds]
    if jobs == 1:
        done = [one(row, seed) for row, seed in todo]
    else:
        from concurrent.futures import ThreadPoolExecutor
        saved = os.environ.get('OMP_NUM_THREADS')
        os.environ['OMP_NUM_THREADS'] = '1'  # read by the tool subprocesses
        try:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                done = list(pool.map(lambda job: one(*job), todo))
        finally:
            if saved is None:
                os.environ.pop('OMP_NUM_THREADS', None)
            else:
                os.environ['OMP_NUM_THREADS'] = saved
    results: Dict[str, List[dict]] = {}
    for (row, _), run in zip(todo, done):
        results.setdefault(row, []).append(run)
    return results


def summary_table(results: Dict[str, List[dict]], epochs: int) -> str:
    """Mean bbox mAP / mAP@50 / mAP@75 over the seeds, and each seed's mAP."""
    rows = []
    for row, runs in results.items():
        m = [r['metrics'] for r in runs]
        mean = {
            k: statistics.mean(x.get(f'coco/bbox_{k}', float('nan')) for x in m)
            for k in ('mAP', 'mAP_50', 'mAP_75')
        }
        train_s = statistics.mean(r['train_s'] for r in runs)
        rows.append([
            ROWS[row][0], epochs * ITERS_PER_EPOCH,
            len(runs), '–' if train_s != train_s else f'{train_s:.0f}', mean['mAP'], mean['mAP_50'],
            mean['mAP_75'], ' / '.join(f"{x.get('coco/bbox_mAP', float('nan')):.3f}" for x in m)
        ])
    return demo.markdown_table([
        'model', 'steps', 'seeds', 'train time per run (s)', 'bbox mAP (mean)', 'mAP@50 (mean)',
        'mAP@75 (mean)', 'bbox mAP per seed'
    ], rows)


def prediction_type_table(runs: Dict[str, dict]) -> str:
    """Last-layer breakdown of each run's top-ranked predictions
    (``tools/analysis/golsd_outputs.py``): label -> run of :func:`run_rows`."""
    sys.path.insert(0, osp.join(demo.ROOT, 'tools', 'analysis'))
    from golsd_outputs import COLUMNS, evaluate
    rows = []
    for label, run in runs.items():
        layers = [
            r for r in evaluate(run['config'], run['ckpt'], demo.cfg_options(run['options']))
            if r[0].startswith('layer ')
        ]
        rows.append([label] + layers[-1][1:])
    return demo.markdown_table(['model', *COLUMNS], rows)


def plot_map_curves(results: Dict[str, List[dict]], out_png: str, title: str) -> str:
    """Mean mAP against training steps per row (thick), each seed thin."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for idx, (row, runs) in enumerate(results.items()):
        curves = [map_curve(r['rows']) for r in runs]
        for xs, ys in curves:
            ax.plot(xs, ys, color=f'C{idx}', lw=0.7, alpha=0.35)
        n = min(len(c[0]) for c in curves)
        if n:
            mean = [statistics.mean(c[1][i] for c in curves) for i in range(n)]
            ax.plot(
                curves[0][0][:n],
                mean,
                color=f'C{idx}',
                lw=2.2,
                marker='o',
                ms=3,
                label=f'{ROWS[row][0]} (mean of {len(runs)})')
    ax.set_xlabel('training steps (batch 8)')
    ax.set_ylabel('bbox mAP (val)')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def collect_runs(outs: Sequence[str], rows: Sequence[str], seeds: Sequence[int],
                 epochs: int) -> Dict[str, List[dict]]:
    """The results of runs already made (e.g. in parallel, into several
    ``--out`` folders), as :func:`run_rows` returns them; train times are not
    recorded there (NaN).

    Raises:
        FileNotFoundError: Naming the run that no folder holds.
    """
    from report import find_scalars, read_scalars
    results: Dict[str, List[dict]] = {}
    for row in rows:
        for seed in seeds:
            name = f'golsd_{row}_e{epochs}_s{seed}'
            found = [o for o in outs if osp.isfile(osp.join(o, 'logs', f'{name}_test.log'))]
            if not found:
                raise FileNotFoundError(f'no folder of {list(outs)} holds the run {name} '
                                        f'(logs/{name}_test.log)')
            with open(osp.join(found[0], 'logs', f'{name}_test.log')) as f:
                metrics = demo.parse_metrics(f.read())
            work_dir = osp.join(found[0], name)
            results.setdefault(row, []).append(
                dict(
                    metrics=metrics,
                    rows=read_scalars(find_scalars(work_dir)),
                    train_s=float('nan'),
                    seed=seed,
                    work_dir=work_dir,
                    ckpt=osp.join(work_dir, f'epoch_{epochs}.pth')))
    return results


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rows', nargs='+', default=['plain', 'golsd'], choices=sorted(ROWS))
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--epochs', type=int, default=12, help='12 iterations each')
    parser.add_argument(
        '--lr-step',
        type=int,
        default=None,
        help='epoch of the 10x LR drop (default: 10 of 12, else 5/6 of --epochs)')
    parser.add_argument('--val-every', type=int, default=3, help='epochs between evaluations')
    parser.add_argument('--out', default='work_dirs/golsd_experiments')
    parser.add_argument('--data', default='data/demo')
    parser.add_argument(
        '--backbone',
        default='scratch',
        choices=BACKBONES,
        help='a ResNet-18 trained from scratch with the detector (the demo), '
        'the detection stage\'s weights frozen, or those weights trained at '
        'LR x0.1')
    parser.add_argument(
        '--jobs',
        type=int,
        default=1,
        help='runs at a time; above 1 each run gets one thread (its numbers '
        'then equal a one-thread run alone)')
    parser.add_argument(
        '--collect',
        nargs='+',
        default=None,
        metavar='DIR',
        help='train nothing: tabulate and plot the runs already in these '
        '--out folders (e.g. rows run in parallel)')
    args = parser.parse_args(argv)
    lr_step = args.lr_step or (10 if args.epochs == 12 else round(args.epochs * 5 / 6))
    os.chdir(demo.ROOT)
    os.makedirs(args.out, exist_ok=True)
    if args.collect:
        results = collect_runs(args.collect, args.rows, args.seeds, args.epochs)
    else:
        ctx = demo.DemoContext(args.out, args.data, quick=False)
        results = run_rows(ctx, args.rows, args.seeds, args.epochs, lr_step, args.val_every,
                           args.backbone, args.jobs)
    table = summary_table(results, args.epochs)
    png = plot_map_curves(results, osp.join(args.out, 'golsd_map.png'),
                          f'{args.epochs} epochs, LR x0.1 at epoch {lr_step}')
    return write_report(osp.join(args.out, 'golsd_experiments.md'), table, png, 'mAP against steps')


def write_report(path: str, text: str, png: str, caption: str) -> str:
    """Write ``text`` and the picture ``png`` (beside it) as markdown, print the
    text and the report's path, and return the path."""
    with open(path, 'w') as f:
        f.write(f'{text}\n\n![{caption}]({osp.basename(png)})\n')
    print(text)
    print(f'report: {path}')
    return path


if __name__ == '__main__':
    main()
