"""The SLidR training and evaluation steps create every tensor on their
inputs' device (checked without a GPU: see ``tests/device_check.py``)."""
import pytest
import torch

from plugins.slidr.geometry import cylindrical_voxelize
from plugins.slidr.metrics import lovasz_softmax
from plugins.slidr.models.sparse import SparseUNet
from tests.device_check import on_input_device

pytest.importorskip('mmengine')


def _scene(scans=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(600, 3, generator=g) * torch.tensor([20.0, 20.0, 2.0]) - 10
    rows = []
    for b in range(scans):
        coords = cylindrical_voxelize(xyz + b)[0]
        rows.append(torch.cat([torch.full((len(coords), 1), b), coords], 1))
    return torch.cat(rows)


def test_recorder_names_an_implicit_device_op():
    with pytest.raises(AssertionError, match='arange'):
        on_input_device(lambda: torch.ones(3) + torch.arange(3).float().to('cpu'))


def test_sparse_unet_forward_backward_stay_on_the_input_device():
    torch.manual_seed(0)
    net = SparseUNet(1, 8, layers=(1, ) * 8, planes=(8, ) * 8, init_dim=8)
    coords = _scene()
    feats = torch.rand(len(coords), 1)
    on_input_device(lambda: net(coords, feats).sum().backward())
    assert net.stem.weight.grad.abs().sum() > 0


def _pretraining_case():
    from plugins.slidr.mmengine import SLidRPretrainer
    torch.manual_seed(0)
    model = SLidRPretrainer(
        student=dict(layers=(1, ) * 8, planes=(8, ) * 8, init_dim=8), dim=8, superpixel_size=24)
    coords = _scene()
    v = len(coords)
    g = torch.Generator().manual_seed(1)
    images = torch.rand(4, 3, 32, 48, generator=g)  # 2 scans x 2 cameras
    superpixels = (torch.arange(32)[:, None] // 8 * 6 + torch.arange(48)[None] // 8)
    pairs = torch.stack([
        torch.randint(0, v, (400, ), generator=g),
        torch.randint(0, 4, (400, ), generator=g),
        torch.randint(0, 32, (400, ), generator=g),
        torch.randint(0, 48, (400, ), generator=g)
    ], 1)
    return model, (coords, torch.ones(v, 1), images, superpixels.expand(4, 32,
                                                                        48).contiguous(), pairs)


def test_pretraining_step_stays_on_the_input_device():
    model, batch = _pretraining_case()

    def step():
        model(*batch)['loss'].backward()

    on_input_device(step)
    assert model.student.final.weight.grad.abs().sum() > 0


def test_pretraining_and_segmentation_run_under_bfloat16_autocast():
    """Mixed precision (as on a GPU with ``AmpOptimWrapper``): the sparse
    convolutions run in bfloat16, the losses stay float32 and close."""
    from plugins.slidr.mmengine.segmentation import SLidRSegmentor
    model, batch = _pretraining_case()
    full = model(*batch)['loss']
    with torch.autocast('cpu', dtype=torch.bfloat16):
        mixed = model(*batch)['loss']
    assert mixed.dtype == torch.float32
    assert abs(mixed.item() - full.item()) < 0.02 * abs(full.item())
    mixed.backward()
    assert torch.isfinite(model.student.final.weight.grad).all()
    torch.manual_seed(0)
    seg = SLidRSegmentor(dict(layers=(1, ) * 8, planes=(8, ) * 8, init_dim=8), num_classes=5)
    coords, feats = batch[:2]
    labels = torch.arange(len(coords)) % 5
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = seg(coords, feats, labels, mode='loss')
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert seg.backbone.stem.weight.grad.dtype == torch.float32


def test_segmentation_steps_stay_on_the_input_device():
    from plugins.slidr.mmengine.segmentation import SLidRSegmentor
    torch.manual_seed(0)
    model = SLidRSegmentor(dict(layers=(1, ) * 8, planes=(8, ) * 8, init_dim=8), num_classes=5)
    coords = _scene()
    v = len(coords)
    labels = torch.arange(v) % 5
    inverse = torch.arange(v).repeat(2)
    feats, probs = torch.ones(v, 1), torch.rand(v, 5).softmax(1)

    def steps():
        losses = model(coords, feats, labels, mode='loss')
        sum(losses.values()).backward()
        with torch.no_grad():
            model(coords, feats, labels, inverse, labels[inverse], mode='predict')
        lovasz_softmax(probs, labels, ignore_index=0)

    on_input_device(steps)
