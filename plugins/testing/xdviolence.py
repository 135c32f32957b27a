"""A small XD-Violence feature set in the real layout (I3D crops, VGGish,
list files, ``gt.npy``) with a planted audio-visual signal, read by
:mod:`plugins.macil.datasets.xdviolence` like the released features."""
from __future__ import annotations

import os
from typing import List, Tuple

import numpy as np

from ..macil.datasets.xdviolence import CROPS, FRAMES_PER_SNIPPET

__all__ = ['make_xdviolence_synthetic', 'make_demo', 'FORMAT']

#: the format's name in ``tools/data/make_demo_data.py`` and under ``data/demo/``
FORMAT = 'xdv'


def make_xdviolence_synthetic(root: str,
                              num_train: Tuple[int, int] = (24, 24),
                              num_test: Tuple[int, int] = (8, 6),
                              length: Tuple[int, int] = (12, 60),
                              seed: int = 0,
                              visual_dim: int = 1024,
                              audio_dim: int = 128,
                              signal: float = 0.2) -> str:
    """Write a small XD-Violence-format set with a planted audio-visual signal.

    Violent videos hold one event interval whose visual features (the first 32
    dims of every crop) *and* audio features (the first 8 dims) are raised by
    ``signal``. Normal videos hold a visual-only distractor interval (the same
    visual pattern, quiet audio), so the audio stream is needed to tell them
    apart. All features are non-negative noise otherwise. ``gt.npy`` marks the
    event frames of the test videos, ``16·T`` frames per video.

    Args:
        root (str): Output folder (list files hold absolute paths).
        num_train, num_test (tuple): ``(violent, normal)`` video counts.
        length (tuple): Range of snippet counts ``T``.
        signal (float): Size of the planted shift (noise s.d. 0.3).

    Returns:
        str: ``root``.

    Raises:
        ValueError: On a length range below 2 snippets.
    """
    if length[0] < 2 or length[1] < length[0]:
        raise ValueError(f'length range must satisfy 2 <= min <= max, got {length}')
    rng = np.random.default_rng(seed)
    root = os.path.abspath(root)
    for sub in ('RGB', 'RGBTest', 'vggish-features/train', 'vggish-features/test'):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    gt: List[np.ndarray] = []
    for split, (n_violent, n_normal) in (('train', num_train), ('test', num_test)):
        rgb_lines, audio_lines = [], []
        for j in range(n_violent + n_normal):
            violent = j < n_violent
            code = 'B1-0-0' if violent else 'A'
            name = f'synthetic_{split}_{j:03d}__#00-00-00_00-00-10_label_{code}'
            t = int(rng.integers(length[0], length[1] + 1))
            event = np.zeros(t, bool)
            span = int(rng.integers(max(1, t // 6), max(2, t // 2)))
            start = int(rng.integers(0, t - span + 1))
            event[start:start + span] = True
            audio = np.abs(rng.normal(0.0, 0.3, (t, audio_dim))).astype(np.float32)
            if violent:
                audio[event, :8] += signal
            folder = 'RGB' if split == 'train' else 'RGBTest'
            for c in range(CROPS):
                vis = np.abs(rng.normal(0.0, 0.3, (t, visual_dim))).astype(np.float32)
                vis[event, :32] += signal  # violent event, or a normal distractor
                path = os.path.join(root, folder, f'{name}__{c}.npy')
                np.save(path, vis)
                rgb_lines.append(path)
            apath = os.path.join(root, 'vggish-features', split, f'{name}__vggish.npy')
            np.save(apath, audio)
            audio_lines.append(apath)
            if split == 'test':
                labels = event & violent
                gt.append(np.repeat(labels.astype(np.float32), FRAMES_PER_SNIPPET))
        prefix = '' if split == 'train' else '_test'
        with open(os.path.join(root, f'rgb{prefix}.list'), 'w') as f:
            f.write('\n'.join(rgb_lines) + '\n')
        with open(os.path.join(root, f'audio{prefix}.list'), 'w') as f:
            f.write('\n'.join(audio_lines) + '\n')
    np.save(os.path.join(root, 'gt.npy'), np.concatenate(gt))
    return root


def make_demo(out: str, seed: int = 0, small: bool = False) -> str:
    """The demo's feature set: 24 + 24 training and 8 + 6 test videos
    (violent + normal; ``small``: 4 + 4 and 3 + 2)."""
    return make_xdviolence_synthetic(
        out,
        num_train=(4, 4) if small else (24, 24),
        num_test=(3, 2) if small else (8, 6),
        seed=seed)
