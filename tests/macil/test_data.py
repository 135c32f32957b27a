"""XD-Violence layout: pairing, labels, length rules, synthetic set, dataset."""
import os

import numpy as np
import pytest
import torch

from plugins.macil.datasets.xdviolence import (fit_length, load_pair, pair_lists, read_list,
                                               video_label)
from plugins.testing.xdviolence import make_xdviolence_synthetic


@pytest.fixture(scope='module')
def xdv(tmp_path_factory):
    return make_xdviolence_synthetic(
        str(tmp_path_factory.mktemp('xdv')),
        num_train=(2, 2),
        num_test=(2, 1),
        length=(5, 40),
        seed=3)


def test_fit_length_subsamples_uniformly_and_pads():
    x = np.arange(250, dtype=np.float32)[:, None]
    out = fit_length(x, 200)
    assert out.shape == (200, 1)
    np.testing.assert_array_equal(out[:, 0], np.floor(np.linspace(0, 249, 200)))
    short = fit_length(np.ones((3, 2), np.float32), 5)
    np.testing.assert_array_equal(short, [[1, 1]] * 3 + [[0, 0]] * 2)
    assert fit_length(x[:200], 200) is not x  # exact length: a zero-padded copy
    with pytest.raises(ValueError, match=r'\(T >= 1, D\)'):
        fit_length(np.zeros((0, 4)), 10)


def test_labels_and_pairing_rules():
    assert video_label('/x/v__#00_label_A__0.npy') == 0
    assert video_label('/x/v__#00_label_B2-0-0__3.npy') == 1
    rgb = [f'/r/vid{i // 5}__{i % 5}.npy' for i in range(10)]
    audio = ['/a/vid0__vggish.npy', '/a/vid1__vggish.npy']
    pairs = pair_lists(rgb, audio)
    assert pairs[7] == ('/r/vid1__2.npy', '/a/vid1__vggish.npy')
    with pytest.raises(ValueError, match='10 crop lines do not pair with 3 audio lines'):
        pair_lists(rgb, audio + ['/a/vid2__vggish.npy'])
    with pytest.raises(ValueError, match='another video'):
        pair_lists(rgb, audio[::-1])


def test_length_mismatch_rules(tmp_path):
    v, a = tmp_path / 'v__0.npy', tmp_path / 'v__vggish.npy'
    np.save(v, np.ones((10, 4), np.float32))
    np.save(a, np.ones((9, 2), np.float32))
    vis, aud = load_pair(str(v), str(a))
    assert vis.shape == (9, 4) and aud.shape == (9, 2)  # one row: trimmed
    np.save(a, np.ones((7, 2), np.float32))
    with pytest.raises(ValueError, match='10 snippets.*has 7'):
        load_pair(str(v), str(a))
    with pytest.raises(FileNotFoundError, match='missing__0.npy'):
        load_pair(str(tmp_path / 'missing__0.npy'), str(a))


def test_synthetic_set_is_in_the_real_layout(xdv):
    rgb, audio = read_list(os.path.join(xdv,
                                        'rgb.list')), read_list(os.path.join(xdv, 'audio.list'))
    assert len(rgb) == 5 * len(audio) == 20
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in rgb + audio)
    assert [video_label(p) for p in audio] == [1, 1, 0, 0]  # violent first
    test_rgb = read_list(os.path.join(xdv, 'rgb_test.list'))
    lengths = [np.load(p).shape[0] for p in test_rgb[::5]]
    gt = np.load(os.path.join(xdv, 'gt.npy'))
    assert gt.size == 16 * sum(lengths) and set(np.unique(gt)) <= {0.0, 1.0}
    assert gt[16 * sum(lengths[:2]):].sum() == 0  # the normal video has no event frames
    x = np.load(rgb[0])
    assert x.dtype == np.float32 and x.shape[1] == 1024 and (x >= 0).all()


def test_dataset_train_and_test_items(xdv):
    from plugins.macil.mmengine import XDViolenceDataset, xdv_test_collate
    train = XDViolenceDataset(xdv, 'train', max_len=16)
    assert len(train) == 20
    item = train[0]
    assert item['visual'].shape == (16, 1024) and item['audio'].shape == (16, 128)
    assert item['labels'].item() == 1.0 and train[19]['labels'].item() == 0.0
    test = XDViolenceDataset(xdv, 'test')
    assert len(test) == 3
    video = test[1]
    t = video['visual'].shape[1]
    assert video['visual'].shape == (5, t, 1024) and video['audio'].shape == (5, t, 128)
    assert torch.equal(video['audio'][0], video['audio'][4]) and video['index'].item() == 1
    batch = xdv_test_collate([test[0], test[1]])
    assert len(batch['visual']) == 2
    with pytest.raises(ValueError, match="split must be"):
        XDViolenceDataset(xdv, 'val')
