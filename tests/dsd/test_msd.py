"""MSD layout: the synthetic maker writes it, the reader and MONAI load it, and
sliding-window Dice/HD95 behave on known predictions."""
import json
import os

import numpy as np
import pytest
import torch

from plugins.dsd.datasets.msd import evaluate_dice_hd95, read_msd_datalist
from plugins.testing.msd import make_msd_synthetic


@pytest.fixture(scope='module')
def task(tmp_path_factory):
    return make_msd_synthetic(
        str(tmp_path_factory.mktemp('msd')),
        num_train=3,
        num_test=1,
        size=16,
        num_classes=3,
        seed=0)


def test_layout_and_dataset_json(task):
    meta = json.load(open(os.path.join(task, 'dataset.json')))
    assert meta['numTraining'] == 3 and meta['numTest'] == 1
    assert meta['labels'] == {'0': 'background', '1': 'class1', '2': 'class2'}
    assert sorted(os.listdir(os.path.join(
        task, 'imagesTr'))) == ['case_000.nii.gz', 'case_001.nii.gz', 'case_002.nii.gz']
    # a stray macOS file is not picked up: the lists come from dataset.json
    open(os.path.join(task, 'imagesTr', '._case_000.nii.gz'), 'w').close()
    items = read_msd_datalist(task)
    assert len(items) == 3 and all(os.path.isabs(v) for i in items for v in i.values())
    assert read_msd_datalist(task, 'test')[0].keys() == {'image'}


def test_monai_transforms_load_the_real_format(task):
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
    items = read_msd_datalist(task)
    data = Compose([LoadImaged(['image', 'label']),
                    EnsureChannelFirstd(['image', 'label'])])(
                        items[0])
    assert data['image'].shape == (1, 16, 16, 16) and data['label'].shape == (1, 16, 16, 16)
    labels = set(np.unique(np.asarray(data['label'])).tolist())
    assert labels <= {0, 1, 2} and len(labels) >= 2


def test_reader_errors_name_the_problem(tmp_path, task):
    with pytest.raises(FileNotFoundError, match='dataset.json'):
        read_msd_datalist(str(tmp_path))
    (tmp_path / 'dataset.json').write_text(json.dumps({'name': 'x'}))
    with pytest.raises(ValueError, match='labels'):
        read_msd_datalist(str(tmp_path))
    meta = json.load(open(os.path.join(task, 'dataset.json')))
    meta['training'].append({'image': './imagesTr/nope.nii.gz', 'label': './labelsTr/x'})
    bad = tmp_path / 'bad'
    bad.mkdir()
    (bad / 'dataset.json').write_text(json.dumps(meta))
    with pytest.raises(FileNotFoundError, match='case_000|nope'):
        read_msd_datalist(str(bad))


class _Oracle(torch.nn.Module):
    """Returns one-hot logits of a fixed label volume (perfect predictions)."""

    def __init__(self, label, shift=0):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.label = label
        self.shift = shift

    def forward(self, x):
        lab = torch.roll(self.label, self.shift, dims=-1)
        return torch.nn.functional.one_hot(lab[:, 0], 3).permute(0, 4, 1, 2, 3).float() * 10


def test_dice_and_hd95_on_known_predictions():
    label = torch.zeros(1, 1, 16, 16, 16, dtype=torch.long)
    label[..., 4:10, 4:10, 4:10] = 1
    label[..., 11:14, 11:14, 11:14] = 2
    loader = [{'image': torch.zeros(1, 1, 16, 16, 16), 'label': label}]
    perfect = evaluate_dice_hd95(_Oracle(label), loader, (16, 16, 16), 3)
    assert perfect['dice'] == pytest.approx(1.0) and perfect['hd95'] == pytest.approx(0.0)
    shifted = evaluate_dice_hd95(_Oracle(label, shift=2), loader, (16, 16, 16), 3)
    # class 1: a 6-wide cube moved by 2 voxels: overlap 4/6 along one axis
    assert shifted['dice_c1'] == pytest.approx(2 * 4 / 12, rel=1e-6)
    assert shifted['hd95'] == pytest.approx(2.0, abs=1e-6)
