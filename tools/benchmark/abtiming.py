"""A/B timing shared by the benchmarks: interleaved rounds, order swapped each
round, ratios taken within a round.

Each round runs every candidate once; odd rounds run them in reverse order, so
neither side always runs first (warm caches, allocator state). A ratio is
taken per round (candidate time ÷ baseline time of the same round), which
cancels slow drifts of the machine's speed; the summary is the median of those
ratios with their minimum and maximum.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, List, Sequence, Tuple

import torch


def sync(device: str) -> None:
    """Wait for queued GPU work (no-op on CPU)."""
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()


def interleaved(candidates: Dict[str, Callable[[], object]],
                rounds: int,
                warmup: int = 1,
                device: str = 'cpu') -> Dict[str, List[float]]:
    """Seconds per call of each candidate, ``rounds`` rounds after ``warmup`` untimed ones.

    Args:
        candidates (dict): Name to a zero-argument callable (one step).
        rounds (int): Timed rounds (≥ 1).
        warmup (int): Untimed rounds first.
        device (str): Synchronised around every call when CUDA.

    Returns:
        dict: Name to its ``rounds`` times, in round order.

    Raises:
        ValueError: On no candidates or ``rounds < 1``.
    """
    if not candidates or rounds < 1:
        raise ValueError(f'need candidates and rounds >= 1, got {list(candidates)} and {rounds}')
    names = list(candidates)
    times: Dict[str, List[float]] = {n: [] for n in names}
    for r in range(warmup + rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            sync(device)
            t0 = time.perf_counter()
            candidates[name]()
            sync(device)
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def round_ratios(times: Dict[str, List[float]],
                 baseline: str) -> Dict[str, Tuple[float, float, float]]:
    """``name -> (median, min, max)`` of the per-round ratios to ``baseline``.

    Raises:
        KeyError: If ``baseline`` was not timed.
    """
    if baseline not in times:
        raise KeyError(f'baseline {baseline!r} not among {list(times)}')
    out = {}
    for name, values in times.items():
        ratios = [v / b for v, b in zip(values, times[baseline])]
        out[name] = (statistics.median(ratios), min(ratios), max(ratios))
    return out


def format_ratio(summary: Tuple[float, float, float]) -> str:
    """``0.312 (0.298–0.331)``: median and range of the per-round ratios."""
    return f'{summary[0]:.3f} ({summary[1]:.3f}–{summary[2]:.3f})'


def medians(times: Dict[str, Sequence[float]]) -> Dict[str, float]:
    """Median seconds per candidate."""
    return {k: statistics.median(v) for k, v in times.items()}
