"""The prediction-type count of tools/analysis/golsd_outputs.py (hand cases)."""

import pytest
import torch

from .conftest import load_tool


def _tool():
    return load_tool('golsd_outputs')


def test_prediction_types_hand_case():
    types = _tool().prediction_types
    gt = torch.tensor([[0., 0, 10, 10], [20, 20, 30, 30]])
    gt_labels = torch.tensor([0, 1])
    boxes = torch.tensor([
        [0., 0, 10, 10],  # 0.9: TP on gt 0
        [1., 0, 10, 10],  # 0.8: same class, gt 0 taken -> duplicate
        [20., 20, 30, 30],  # 0.7: label 0 on a class-1 gt -> wrong class
        [50., 50, 60, 60],  # 0.6: no overlap -> background
        [20., 20, 30, 31],  # 0.5: TP on gt 1
        [0., 0, 10, 10]
    ])  # 0.1: beyond top=5
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    labels = torch.tensor([0, 0, 0, 1, 1, 0])
    got = types(boxes, scores, labels, gt, gt_labels, top=5)
    assert got == dict(tp=2, duplicate=1, wrong_class=1, background=1)
    # all six: the last one is another duplicate
    assert types(boxes, scores, labels, gt, gt_labels)['duplicate'] == 2
    # the higher score takes the ground truth, whatever the order given
    perm = torch.tensor([5, 4, 3, 2, 1, 0])
    assert types(boxes[perm], scores[perm], labels[perm], gt, gt_labels, top=5) == got


def test_prediction_types_without_ground_truth_and_bad_shapes():
    types = _tool().prediction_types
    got = types(
        torch.rand(3, 4), torch.rand(3), torch.zeros(3, dtype=torch.long), torch.zeros(0, 4),
        torch.zeros(0, dtype=torch.long))
    assert got == dict(tp=0, duplicate=0, wrong_class=0, background=3)
    with pytest.raises(ValueError, match='boxes must be'):
        types(torch.rand(3, 5), torch.rand(3), torch.zeros(3), torch.rand(1, 4), torch.zeros(1))
