"""SLIC superpixels: uint8 PNG cache, reference vs fast agreement, the offline tool."""
import os
import subprocess
import sys

import numpy as np
import pytest

from plugins.slidr.datasets.superpixels import (blob_image, boundary_agreement, load_labels,
                                                save_labels, slic_fast, slic_reference)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_reference_settings_and_fast_agreement():
    img = blob_image(180, 320, blobs=10, seed=1)
    ref = slic_reference(img)
    fast = slic_fast(img, factor=2)
    assert ref.dtype == fast.dtype == np.uint8 and ref.shape == fast.shape == (180, 320)
    assert ref.min() == 0 and fast.min() == 0  # start_label=0
    recall, precision = boundary_agreement(ref, fast, tolerance=2)
    assert recall > 0.6 and precision > 0.6
    assert boundary_agreement(ref, ref) == (1.0, 1.0)


def test_boundary_agreement_hand_case():
    a = np.zeros((6, 6), np.uint8)
    a[:, 3:] = 1  # boundary at columns 3
    b = np.zeros((6, 6), np.uint8)
    b[:, 5:] = 1  # boundary at column 5, 2 px away
    assert boundary_agreement(a, b, tolerance=2) == (1.0, 1.0)
    assert boundary_agreement(a, b, tolerance=1) == (0.0, 0.0)


def test_png_round_trip_and_id_check(tmp_path):
    labels = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    path = str(tmp_path / 'tok.png')
    save_labels(labels, path)
    assert np.array_equal(load_labels(path), labels)
    with pytest.raises(ValueError, match='superpixel id 220 >= superpixel_size 150'):
        load_labels(path, stride=150)
    with pytest.raises(FileNotFoundError, match='make_superpixels'):
        load_labels(str(tmp_path / 'missing.png'))
    with pytest.raises(ValueError, match='2-D uint8'):
        save_labels(labels.astype(np.int32), path)
    with pytest.raises(ValueError, match='RGB uint8'):
        slic_fast(np.zeros((8, 8), np.uint8))


def test_tool_writes_token_pngs_and_caches(tmp_path):
    import cv2
    images = tmp_path / 'cams'
    images.mkdir()
    for i in range(2):
        cv2.imwrite(str(images / f'token{i}.jpg'), blob_image(90, 160, 6, seed=i)[..., ::-1])
    out = tmp_path / 'sp'
    cmd = [
        sys.executable, 'tools/data/make_superpixels.py', '--images',
        str(images), '--out',
        str(out), '--workers', '1'
    ]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    assert "'computed': 2" in first.stdout
    maps = sorted(os.listdir(out))
    assert maps == ['token0.png', 'token1.png']
    assert load_labels(str(out / 'token0.png')).shape == (90, 160)
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    assert "'cached': 2" in again.stdout
