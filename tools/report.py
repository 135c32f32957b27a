"""Read mmengine run logs and draw the pictures of a demo report."""
from __future__ import annotations

import glob
import json
import os
from typing import List, Mapping, Optional, Sequence

__all__ = ['find_scalars', 'read_scalars', 'plot_curves', 'markdown_table', 'last_value']


def find_scalars(work_dir: str) -> str:
    """Path of the newest ``vis_data/scalars.json`` under ``work_dir``.

    Raises:
        FileNotFoundError: If the run wrote none.
    """
    paths = sorted(glob.glob(os.path.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not paths:
        raise FileNotFoundError(f'no */vis_data/scalars.json under {work_dir!r}: '
                                f'did the run log anything?')
    return paths[-1]


def read_scalars(path: str) -> List[dict]:
    """The JSON lines of an mmengine ``scalars.json`` (one dict per log step)."""
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def plot_curves(runs: Mapping[str, Sequence[dict]],
                keys: Sequence[str],
                out_png: str,
                title: str = '',
                x_key: str = 'iter') -> str:
    """Plot training curves of several runs, one panel per key.

    Args:
        runs (Mapping[str, Sequence[dict]]): Run label to its scalar rows.
        keys (Sequence[str]): Scalars to plot (e.g. ``['loss', 'loss_cls']``).
        out_png (str): Output image path.
        title (str): Figure title.
        x_key (str): The x axis (``'iter'`` or ``'step'``).

    Returns:
        str: ``out_png``.

    Raises:
        ValueError: If no run has any of ``keys``.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    present = [k for k in keys if any(k in r for rows in runs.values() for r in rows)]
    if not present:
        raise ValueError(f'none of {list(keys)} appears in the logs')
    fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.2), squeeze=False)
    for ax, key in zip(axes[0], present):
        for idx, (label, rows) in enumerate(runs.items()):
            pts = [(r[x_key], r[key]) for r in rows if key in r and x_key in r]
            if pts:  # one colour per run across panels
                xs, ys = zip(*pts)
                ax.plot(xs, ys, label=label, lw=1.6, color=f'C{idx}')
        ax.set_title(key)
        ax.set_xlabel(x_key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, out_png)


def _save(fig, out_png: str) -> str:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def plot_xy_curves(curves: Mapping[str, Sequence[Sequence[float]]],
                   out_png: str,
                   xlabel: str,
                   ylabel: str,
                   title: str = '') -> str:
    """One panel of ``label -> (xs, ys)`` lines (e.g. precision–recall curves).

    Returns:
        str: ``out_png``.

    Raises:
        ValueError: If ``curves`` is empty.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    if not curves:
        raise ValueError('no curves to plot')
    fig, ax = plt.subplots(figsize=(4.6, 3.8))
    for idx, (label, (xs, ys)) in enumerate(curves.items()):
        ax.plot(xs, ys, label=label, lw=1.6, color=f'C{idx}')
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _save(fig, out_png)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence], floatfmt: str = '.3f') -> str:
    """A GitHub-flavoured markdown table."""

    def fmt(v):
        return format(v, floatfmt) if isinstance(v, float) else str(v)

    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join('---' for _ in header) + '|']
    lines += ['| ' + ' | '.join(fmt(v) for v in row) + ' |' for row in rows]
    return '\n'.join(lines)


def last_value(rows: Sequence[dict], key: str) -> Optional[float]:
    """The last logged value of ``key`` (``None`` if never logged)."""
    for row in reversed(rows):
        if key in row:
            return row[key]
    return None
