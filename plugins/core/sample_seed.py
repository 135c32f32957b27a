"""Per-sample randomness as a function of (run seed, pass, sample index).

A data pipeline that draws from a process-wide generator makes each sample's
augmentation depend on everything drawn before it: on the worker it ran in,
on how many samples a resumed run skipped, on the order of the loader's
fast-forward. Here a sampler tags each index with the pass over the data
that drew it (the epoch, or the round of an infinite sampler) and the run's
seed (:class:`DrawIndex`), and the pipeline of that one sample runs under
generators seeded from the three numbers (:func:`seeded_sample`), leaving the
process-wide streams as they were. A killed and resumed run, or the same run
with another number of workers, then augments every sample identically.

Host-free; the mmengine samplers and dataset wrapper that use it live in
:mod:`plugins.core.mmengine.sample_seed`.
"""
from __future__ import annotations

import contextlib
import random
from typing import Iterator, List, Optional

import numpy as np
import torch

__all__ = ['DrawIndex', 'draw_entropy', 'sample_seed', 'seeded_sample']


class DrawIndex(int):
    """A dataset index that also carries ``draw`` (which pass over the data
    drew it) and ``seed`` (the run's seed). It is an ``int`` everywhere else.

    Args:
        index (int): The sample index.
        draw (int): Epoch, or round of an infinite sampler (≥ 0).
        seed (int): The run's seed.

    Raises:
        ValueError: If ``draw`` is negative.
    """

    draw: int
    seed: int

    def __new__(cls, index: int, draw: int, seed: int) -> 'DrawIndex':
        if int(draw) < 0:
            raise ValueError(f'draw must be ≥ 0, got {draw}')
        obj = super().__new__(cls, int(index))
        obj.draw, obj.seed = int(draw), int(seed)
        return obj

    def __reduce__(self):  # keeps draw and seed through data-loader worker queues
        return DrawIndex, (int(self), self.draw, self.seed)

    def __repr__(self) -> str:
        return f'DrawIndex({int(self)}, draw={self.draw}, seed={self.seed})'


def _entropy(seed: int, draw: int, index: int) -> List[int]:
    return [int(seed) % 2**63, int(draw), int(index)]


def draw_entropy(index: DrawIndex) -> List[int]:
    """``[run seed, draw, index]`` as non-negative integers, for numpy's seeding
    (``np.random.default_rng([own_seed, *draw_entropy(i)])``)."""
    return _entropy(index.seed, index.draw, int(index))


def sample_seed(seed: int, draw: int, index: int) -> int:
    """A 32-bit seed for one sample in one pass of one run.

    Distinct inputs give independent streams (numpy's ``SeedSequence``
    hashing), so neighbouring indices or passes are not correlated.

    Returns:
        int: In ``[0, 2**32)``.
    """
    return int(np.random.SeedSequence(_entropy(seed, draw, index)).generate_state(1)[0])


@contextlib.contextmanager
def seeded_sample(index: int) -> Iterator[Optional[int]]:
    """Run one sample's pipeline under its own seed.

    For a :class:`DrawIndex`, Python's ``random``, numpy's global generator
    and torch's CPU generator are seeded with :func:`sample_seed` and put
    back as they were afterwards. A plain ``int`` changes nothing (yields
    ``None``).

    Yields:
        int | None: The sample's seed.
    """
    if not isinstance(index, DrawIndex):
        yield None
        return
    seed = sample_seed(index.seed, index.draw, int(index))
    saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.random.default_generator.manual_seed(seed)  # CPU only: CUDA streams untouched
    try:
        yield seed
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])
