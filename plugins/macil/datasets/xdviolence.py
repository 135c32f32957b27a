"""XD-Violence feature layout: list files, pairing, labels, lengths.

    RGB/<name>__{0..4}.npy              I3D RGB per crop, float32 (T, 1024)
    RGBTest/<name>__{0..4}.npy
    vggish-features/{train,test}/<name>__vggish.npy     VGGish per video (T, 128)
    rgb.list / audio.list               one absolute path per line (5 crop lines per video,
    rgb_test.list / audio_test.list     crop line i <-> audio line i // 5)
    gt.npy                              test frame labels (0/1), test-list order

Normal iff the path contains ``_label_A``. Host-free: numpy only.
"""
from __future__ import annotations

import os
from typing import List, Sequence, Tuple

import numpy as np

__all__ = [
    'read_list', 'pair_lists', 'video_label', 'fit_length', 'load_pair', 'CROPS',
    'FRAMES_PER_SNIPPET'
]

CROPS = 5
FRAMES_PER_SNIPPET = 16


def read_list(path: str) -> List[str]:
    """Non-empty stripped lines of a list file.

    Raises:
        FileNotFoundError: If the list is missing.
        ValueError: If it is empty.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'list file {path} does not exist')
    with open(path) as f:
        lines = [line.strip() for line in f if line.strip()]
    if not lines:
        raise ValueError(f'list file {path} is empty')
    return lines


def pair_lists(rgb: Sequence[str], audio: Sequence[str]) -> List[Tuple[str, str]]:
    """``(crop path, audio path)`` with crop line ``i`` ↔ audio line ``i // 5``.

    Raises:
        ValueError: If the counts do not pair (5 crops per audio line) or a
            crop's video differs from its audio file's video (names both).
    """
    if len(rgb) != CROPS * len(audio):
        raise ValueError(f'{len(rgb)} crop lines do not pair with {len(audio)} audio lines '
                         f'({CROPS} crops per video expected)')
    pairs = []
    for i, crop in enumerate(rgb):
        sound = audio[i // CROPS]
        video = os.path.basename(crop).rsplit('__', 1)[0]
        if os.path.basename(sound).rsplit('__', 1)[0] != video:
            raise ValueError(f'crop line {i} ({crop}) pairs with audio line {i // CROPS} '
                             f'({sound}), which is another video')
        pairs.append((crop, sound))
    return pairs


def video_label(path: str) -> int:
    """0 (normal) iff the path contains ``_label_A``, else 1 (violent)."""
    return 0 if '_label_A' in path else 1


def fit_length(features: np.ndarray, max_len: int = 200) -> np.ndarray:
    """Longer: ``max_len`` rows at ``floor(linspace(0, T−1, max_len))``;
    shorter: zero-padded to ``max_len``.

    Raises:
        ValueError: On a non-2D or empty array.
    """
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f'features must be (T >= 1, D), got {features.shape}')
    t = features.shape[0]
    if t > max_len:
        idx = np.floor(np.linspace(0, t - 1, max_len)).astype(np.int64)
        return features[idx]
    out = np.zeros((max_len, features.shape[1]), dtype=features.dtype)
    out[:t] = features
    return out


def load_pair(crop: str, audio: str, trim: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Load one crop's visual and its video's audio features.

    With ``trim`` a one-row length difference (present in some feature sets)
    is trimmed to the shorter stream; larger differences are errors.

    Raises:
        FileNotFoundError: If a file is missing (names it).
        ValueError: On bad shapes or unequal lengths.
    """
    for p in (crop, audio):
        if not os.path.isfile(p):
            raise FileNotFoundError(f'feature file {p} does not exist')
    v, a = np.load(crop).astype(np.float32), np.load(audio).astype(np.float32)
    if v.ndim != 2 or a.ndim != 2:
        raise ValueError(f'features must be (T, D): {crop} {v.shape}, {audio} {a.shape}')
    if v.shape[0] != a.shape[0]:
        if trim and abs(v.shape[0] - a.shape[0]) == 1:
            t = min(v.shape[0], a.shape[0])
            v, a = v[:t], a[:t]
        else:
            raise ValueError(f'audio and visual lengths differ: {crop} has {v.shape[0]} '
                             f'snippets, {audio} has {a.shape[0]}')
    return v, a
