"""MACIL-SD's training step (two optimisers, EMA) and prediction create every
tensor on their inputs' device (checked without a GPU: see
``tests/device_check.py``)."""
from types import SimpleNamespace

import pytest
import torch

from tests.device_check import on_input_device

from .test_mmengine import _batch, _model, _wrappers

pytest.importorskip('mmengine')


@pytest.mark.parametrize('mask_padding', [False, True])
def test_train_step_ema_and_predict_stay_on_the_input_device(mask_padding):
    from plugins.macil.mmengine import SelfDistillEMAHook
    model = _model(network=dict(mask_padding=mask_padding))
    model.lambda_b = model.lambda_n = 1.0
    wrappers = _wrappers(model)
    batch = _batch()
    v, a = torch.rand(3, 9, 1024), torch.randn(3, 9, 128)
    label, length = torch.tensor(1.0), torch.tensor(0)
    runner = SimpleNamespace(model=model, epoch=2)
    hook = SelfDistillEMAHook()
    before = model.av.fc_v.weight.detach().clone()

    def steps():
        model.train()
        model.train_step(batch, wrappers)
        hook.after_train_epoch(runner)
        model.eval()
        with torch.no_grad():
            model([v], [a], [label], [length], mode='predict')

    on_input_device(steps)
    assert not torch.equal(before, model.av.fc_v.weight)
