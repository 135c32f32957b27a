"""The GO-LSD detectors' training and inference steps create every tensor on
their inputs' device (checked without a GPU: see ``tests/device_check.py``)."""
import pytest
import torch

from tests.device_check import on_input_device

from .conftest import samples
from .test_mmdet_deformable import TWO_STAGE, _tiny

pytest.importorskip('mmdet')

SIZE = 64


def _train_and_predict(model):
    torch.manual_seed(0)
    imgs = torch.randn(2, 3, SIZE, SIZE)
    train, empty, test = samples([2, 1], SIZE), samples([0, 0], SIZE), samples([0, 0], SIZE)

    def steps():
        model.train()
        losses = model.loss(imgs, train)
        sum(v for k, v in losses.items() if 'loss' in k).backward()
        model.loss(imgs, empty)  # no ground truth anywhere
        model.eval()
        with torch.no_grad():
            model.predict(imgs, test)

    on_input_device(steps)


def test_dino_steps_stay_on_the_input_device(golsd_model):
    _train_and_predict(golsd_model)
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for n, p in golsd_model.named_parameters() if 'bbox_head' in n)


def test_deformable_detr_steps_stay_on_the_input_device():
    _train_and_predict(_tiny(TWO_STAGE))


def test_dino_with_lqe_stays_on_the_input_device():
    from .test_lqe import _build
    _train_and_predict(_build(dict()))
