"""mmengine samplers and a pipeline wrapper for per-sample seeds (exact resume).

::

    train_dataloader = dict(
        sampler=dict(type='SampleSeedSampler', shuffle=True),          # epoch-based
        # sampler=dict(type='SampleSeedInfiniteSampler', shuffle=True),  # iteration-based
        dataset=dict(..., pipeline=[
            dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
            dict(type='SampleSeeded', transforms=[dict(type='RandomFlip', prob=0.5)]),
            dict(type='PackSegInputs')]))

The samplers draw exactly the indices of mmengine's ``DefaultSampler`` and
``InfiniteSampler`` and tag each with the pass that drew it and the run's seed
(:class:`~plugins.core.sample_seed.DrawIndex`). ``SampleSeeded`` runs its
transforms for that sample under generators seeded from the three numbers and
leaves the process-wide streams untouched, so neither mmengine's data-loader
fast-forward on ``--resume`` (iteration-based loops) nor the number of workers
changes any augmentation. Datasets of this project that keep their own
generators (``MSDDataset``: MONAI's) read the tag directly.
"""
from __future__ import annotations

from typing import Callable, Iterator, Optional, Sequence, Union

from mmengine.dataset import DefaultSampler, InfiniteSampler
from mmengine.registry import DATA_SAMPLERS, TRANSFORMS

from ..sample_seed import DrawIndex, seeded_sample

__all__ = ['SampleSeedSampler', 'SampleSeedInfiniteSampler', 'SampleSeeded']


class SampleSeedSampler(DefaultSampler):
    """mmengine's ``DefaultSampler``; each index carries the epoch and seed.

    Args: as ``DefaultSampler`` (``dataset``, ``shuffle``, ``seed``,
    ``round_up``); the Runner fills ``seed`` from ``randomness.seed``.
    """

    def __iter__(self) -> Iterator[int]:
        for index in super().__iter__():
            yield DrawIndex(index, self.epoch, self.seed)


class SampleSeedInfiniteSampler(InfiniteSampler):
    """mmengine's ``InfiniteSampler``; each index carries its round and seed.

    Round ``r`` is the ``r``-th pass over the (reshuffled) data, counted over
    the stream of all ranks, so it is the same whatever the world size.
    """

    def _infinite_indices(self) -> Iterator[int]:
        for position, index in enumerate(super()._infinite_indices()):
            yield DrawIndex(index, position // max(self.size, 1), self.seed)


class SampleSeeded:
    """Run pipeline transforms under the sample's own seed.

    Wraps the random transforms of a pipeline; the seed comes from
    ``results['sample_idx']``, which mmengine's ``BaseDataset`` sets to the
    index the sampler gave (a :class:`DrawIndex` from the samplers above). With
    a plain index the transforms run unchanged.

    Args:
        transforms (list[dict | callable]): Transform configs (built with
            ``TRANSFORMS`` in the current scope) or callables.

    Raises:
        TypeError: If an entry is neither a config nor callable.
    """

    def __init__(self, transforms: Sequence[Union[dict, Callable]]) -> None:
        built = []
        for t in transforms:
            if isinstance(t, dict):
                t = TRANSFORMS.build(t)
            if not callable(t):
                raise TypeError(f'SampleSeeded takes transform configs or callables, got '
                                f'{type(t).__name__}')
            built.append(t)
        self.transforms = built

    def __call__(self, results: dict) -> Optional[dict]:
        with seeded_sample(results.get('sample_idx')):
            for t in self.transforms:
                results = t(results)
                if results is None:
                    return None
        return results

    def __repr__(self) -> str:
        return f'SampleSeeded({self.transforms})'


def _register() -> None:
    for cls in (SampleSeedSampler, SampleSeedInfiniteSampler):
        if cls.__name__ not in DATA_SAMPLERS.module_dict:
            DATA_SAMPLERS.register_module(module=cls)
    if SampleSeeded.__name__ not in TRANSFORMS.module_dict:
        TRANSFORMS.register_module(module=SampleSeeded)


_register()
