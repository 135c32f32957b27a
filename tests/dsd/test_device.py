"""DSD's training steps (both modes, MONAI and mmseg hosts) create every
tensor on their inputs' device (checked without a GPU: see
``tests/device_check.py``)."""
import pytest
import torch

from plugins.dsd import DSDLoss, DSDTaps
from tests.device_check import on_input_device

pytest.importorskip('monai')


@pytest.mark.parametrize('mode', ['straightforward', 'lean'])
def test_monai_dynunet_step_stays_on_the_input_device(mode):
    from monai.networks.nets import DynUNet
    torch.manual_seed(0)
    net = DynUNet(
        3,
        1,
        3,
        kernel_size=[3] * 5,
        strides=[1, 2, 2, 2, 2],
        upsample_kernel_size=[2, 2, 2, 2],
        filters=[4, 8, 16, 32, 40],
        res_block=True,
        norm_name='instance')
    taps = DSDTaps(net, 'dynunet', num_classes=3, mode=mode)
    loss_fn = DSDLoss(taps, temperature=3.0, ignore_index=255)
    net.train()
    x = torch.randn(2, 1, 32, 32, 32)
    y = torch.randint(0, 3, (2, 1, 32, 32, 32))
    y[:, :, :2] = 255

    def step():
        loss_fn(net(x), y).backward()
        net.eval()
        with torch.no_grad():
            net(x)
        net.train()

    on_input_device(step)
    assert all(p.grad is not None for p in net.dsd_heads.parameters())


@pytest.mark.parametrize('mode', ['straightforward', 'lean'])
def test_mmseg_unet_step_stays_on_the_input_device(mode):
    pytest.importorskip('mmseg')
    from .test_mmseg import _build, _cfg, _samples
    cfg = _cfg().model
    cfg.loss_dsd = dict(cfg.get('loss_dsd') or {}, strategy=mode)
    model = _build(cfg)
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    labels = torch.randint(0, 3, (2, 64, 64))
    labels[:, :, -6:] = 255
    train, test = _samples(labels), _samples(labels)

    def step():
        model.train()
        model.loss(x, train)['loss_dsd'].backward()
        model.eval()
        with torch.no_grad():
            model.predict(x, test)

    on_input_device(step)
