"""SemanticKITTI format: learning map, labels, calibration, paths, dataset."""
import os

import pytest

from plugins.slidr.datasets.semantickitti import (TRAIN_SEQUENCES, learning_map, read_calib,
                                                  read_labels, read_scan, scan_paths)
from plugins.testing.semantickitti import make_semantickitti_synthetic


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    return make_semantickitti_synthetic(
        str(tmp_path_factory.mktemp('kitti_bin_velodyne')), scans_per_sequence=2, points=1500)


def test_learning_map_values():
    lut = learning_map()
    assert [lut[i] for i in (0, 1, 52, 99, 10, 40, 60, 252, 253, 254, 255, 256, 258, 259)] == \
        [0, 0, 0, 0, 1, 9, 9, 1, 7, 6, 8, 5, 4, 5]
    assert lut.max() == 19 and lut.shape == (260, )


def test_reading_the_real_format(root):
    pairs = scan_paths(root, TRAIN_SEQUENCES)
    assert len(pairs) == 20 and all(os.path.isfile(s) for s, _ in pairs)
    assert 'bin_velodyne' in pairs[0][0] and pairs[0][1].endswith('/labels/000000.label')
    scan = read_scan(pairs[0][0])
    labels = read_labels(pairs[0][1], scan.shape[0])
    assert scan.shape == (1500, 4) and labels.max() < 260  # instance bits stripped
    calib = read_calib(os.path.join(root, 'dataset', 'sequences', '00', 'calib.txt'))
    assert calib['P2'].shape == (3, 4) and calib['Tr'].shape == (4, 4)
    with pytest.raises(ValueError, match='1500 labels for 10 points'):
        read_labels(pairs[0][1], 10)
    bad = os.path.join(root, 'bad_calib.txt')
    with open(bad, 'w') as f:
        f.write('P0: 1 0 0 0 0 1 0 0 0 0 1 0\n')
    with pytest.raises(KeyError, match=r"lacks \['P2', 'Tr'\]"):
        read_calib(bad)


def test_dataset_items_and_label_fraction(root):
    pytest.importorskip('mmengine')
    import plugins  # noqa: F401
    from plugins.slidr.mmengine import SemanticKITTIDataset
    train = SemanticKITTIDataset(root, 'train', label_every=4, augment=False)
    assert len(train) == 5  # every 4th of 20 sorted scans
    item = train[0]
    assert set(item['point_labels'].unique().tolist()) <= {1, 9, 11, 13, 15}
    assert float(item['feats'].min()) >= 1.0  # remission + 1
    assert len(SemanticKITTIDataset(root, 'val')) == 2
