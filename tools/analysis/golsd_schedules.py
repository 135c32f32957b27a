"""Final bbox mAP of plain and GO-LSD DINO against the length of the schedule.

    python tools/analysis/golsd_schedules.py \\
        --schedule 12 work_dirs/gs_golsd work_dirs/gs_plain \\
        --schedule 24 work_dirs/g24 \\
        --schedule 36 work_dirs/g36_plain work_dirs/g36_golsd \\
        --seeds 0 1 2 3 4 --out work_dirs/golsd_schedules

Each ``--schedule EPOCHS DIR [DIR ...]`` names the ``--out`` folders of
``tools/golsd_experiments.py`` runs of that many epochs (the first folder that
holds a run is read). Every schedule is a complete run with its own LR drop,
not a point on a longer run's curve. For each schedule the two rows are paired
by seed: the table gives both means, the mean paired difference with its
standard error, and on how many seeds the plugin is ahead; the picture draws
the per-seed finals and the means against training steps, and the paired
differences below them.
"""
from __future__ import annotations

import argparse
import math
import os
import os.path as osp
import statistics
import sys
from typing import Dict, List, Sequence, Tuple

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools'))  # golsd_experiments, demo, report

ROWS = ('plain', 'golsd')


def paired(base: Sequence[float], other: Sequence[float]) -> Tuple[float, float, int]:
    """Mean of ``other − base`` over the pairs, its standard error (NaN for one
    pair) and how many pairs have ``other > base``.

    Raises:
        ValueError: If the sequences differ in length or are empty.
    """
    if len(base) != len(other) or not base:
        raise ValueError(f'need equally many paired values, got {len(base)} and {len(other)}')
    diffs = [o - b for b, o in zip(base, other)]
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float('nan')
    return statistics.mean(diffs), se, sum(d > 0 for d in diffs)


def final_maps(schedules: Dict[int, List[str]],
               seeds: Sequence[int]) -> Dict[int, Dict[str, List[float]]]:
    """``epochs -> row -> [final bbox mAP per seed]`` from the runs' test logs.

    Raises:
        FileNotFoundError: Naming a run that none of its schedule's folders holds.
    """
    from golsd_experiments import collect_runs
    out: Dict[int, Dict[str, List[float]]] = {}
    for epochs, dirs in sorted(schedules.items()):
        runs = collect_runs(dirs, ROWS, seeds, epochs)
        out[epochs] = {row: [r['metrics']['coco/bbox_mAP'] for r in runs[row]] for row in ROWS}
    return out


def table(maps: Dict[int, Dict[str, List[float]]], iters_per_epoch: int) -> str:
    """Markdown: one line per schedule."""
    lines = [
        '| steps | seeds | plain DINO (mean) | GO-LSD DINO (mean) | GO-LSD − plain, paired '
        '(standard error) | plugin ahead on |', '|---|---|---|---|---|---|'
    ]
    for epochs, m in maps.items():
        diff, se, ahead = paired(m['plain'], m['golsd'])
        n = len(m['plain'])
        lines.append(f'| {epochs * iters_per_epoch} | {n} | {statistics.mean(m["plain"]):.3f} | '
                     f'{statistics.mean(m["golsd"]):.3f} | {diff:+.3f} ({se:.3f}) | '
                     f'{ahead} of {n} |')
    return '\n'.join(lines)


def plot(maps: Dict[int, Dict[str, List[float]]], iters_per_epoch: int, out_png: str) -> str:
    """Finals per seed (dots) and means (lines) on top; paired differences
    with ±1 standard error below."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    steps = [e * iters_per_epoch for e in maps]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(5.6, 5.2), sharex=True, gridspec_kw=dict(height_ratios=(3, 2)))
    labels = {'plain': 'DINO (plain)', 'golsd': 'DINO + GO-LSD/FDR'}
    for idx, row in enumerate(ROWS):
        for x, m in zip(steps, maps.values()):
            top.scatter(
                [x + (idx - 0.5) * 6] * len(m[row]), m[row], color=f'C{idx}', s=10, alpha=0.45)
        top.plot(
            steps, [statistics.mean(m[row]) for m in maps.values()],
            color=f'C{idx}',
            lw=2,
            marker='o',
            label=f'{labels[row]}, mean')
    top.set_ylabel('final bbox mAP (val)')
    top.grid(alpha=0.3)
    top.legend(fontsize=8)
    top.set_title('each point: a complete schedule (LR x0.1 at 5/6), one seed', fontsize=9)
    stats = [paired(m['plain'], m['golsd']) for m in maps.values()]
    bottom.axhline(0.0, color='0.4', lw=0.8)
    bottom.errorbar(
        steps, [s[0] for s in stats],
        yerr=[0.0 if math.isnan(s[1]) else s[1] for s in stats],
        color='C2',
        marker='o',
        capsize=4,
        label='GO-LSD − plain, paired by seed (±1 SE)')
    bottom.set_xlabel('training steps (batch 8)')
    bottom.set_ylabel('mAP difference')
    bottom.grid(alpha=0.3)
    bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def parse_schedules(items: Sequence[Sequence[str]]) -> Dict[int, List[str]]:
    """``[['12', 'a', 'b'], ['36', 'c']] -> {12: ['a', 'b'], 36: ['c']}``.

    Raises:
        ValueError: On a schedule without folders, a non-integer epoch count or
            one given twice.
    """
    out: Dict[int, List[str]] = {}
    for item in items:
        if len(item) < 2:
            raise ValueError(f'--schedule needs EPOCHS and at least one folder, got {item}')
        try:
            epochs = int(item[0])
        except ValueError:
            raise ValueError(f'--schedule: {item[0]!r} is not a number of epochs') from None
        if epochs in out:
            raise ValueError(f'--schedule {epochs} given twice')
        out[epochs] = list(item[1:])
    return out


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--schedule',
        nargs='+',
        action='append',
        required=True,
        metavar='EPOCHS DIR',
        help='epochs of the schedule, then the folders holding its runs')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument('--out', default='work_dirs/golsd_schedules')
    args = parser.parse_args(argv)
    from golsd_experiments import ITERS_PER_EPOCH, write_report
    os.chdir(ROOT)
    maps = final_maps(parse_schedules(args.schedule), args.seeds)
    os.makedirs(args.out, exist_ok=True)
    png = plot(maps, ITERS_PER_EPOCH, osp.join(args.out, 'golsd_schedules.png'))
    text = table(maps, ITERS_PER_EPOCH)

    def per_seed(values: Sequence[float]) -> str:
        return ' / '.join(f'{v:.3f}' for v in values)

    for epochs, m in maps.items():
        text += (f'\n\n{epochs * ITERS_PER_EPOCH} steps, per seed {list(args.seeds)}: '
                 f'plain {per_seed(m["plain"])}; GO-LSD {per_seed(m["golsd"])}')
    return write_report(
        osp.join(args.out, 'golsd_schedules.md'), text, png, 'final mAP against schedule length')


if __name__ == '__main__':
    main()
