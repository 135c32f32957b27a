"""SLidR 2D teacher: torchvision names, dilation, frozen encoder, head."""
import pytest
import torch

from plugins.slidr.models.image_teacher import FrozenImageTeacher, ResNet50, moco_to_resnet


def test_torchvision_layout_and_parameter_count():
    net = ResNet50()
    state = net.state_dict()
    # torchvision resnet50 has 25,557,032 parameters, 2,049,000 of them in fc
    assert sum(p.numel() for p in net.parameters()) == 25_557_032 - 2_049_000
    for key in ('conv1.weight', 'bn1.running_mean', 'layer1.0.downsample.0.weight',
                'layer1.0.downsample.1.num_batches_tracked', 'layer2.3.conv2.weight',
                'layer3.5.bn3.bias', 'layer4.2.conv3.weight'):
        assert key in state, key
    assert len([k for k in state if k.endswith('.weight')]) == 106


def test_dilation_gives_output_stride_4():
    net = ResNet50().eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 3, 64, 96))
    assert out.shape == (1, 2048, 16, 24)
    assert net.layer4[1].conv2.dilation == (8, 8) and net.layer4[0].conv2.dilation == (4, 4)
    assert net.layer2[0].conv2.stride == (1, 1)
    plain = ResNet50(dilate=(False, False, False)).eval()
    with torch.no_grad():
        assert plain(torch.zeros(1, 3, 64, 96)).shape == (1, 2048, 2, 3)


def test_moco_keys_load_strictly_and_fc_is_dropped():
    src = ResNet50().state_dict()
    moco = {f'module.encoder_q.{k}': v for k, v in src.items()}
    moco['module.encoder_q.fc.0.weight'] = torch.zeros(2048, 2048)
    moco['module.encoder_k.conv1.weight'] = torch.zeros(1)
    moco['module.queue'] = torch.zeros(1)
    teacher = FrozenImageTeacher()
    teacher.load_encoder({'state_dict': moco})
    assert torch.equal(teacher.encoder.conv1.weight, src['conv1.weight'])
    tv = dict(src, **{'fc.weight': torch.zeros(1000, 2048), 'fc.bias': torch.zeros(1000)})
    assert set(moco_to_resnet(tv)) == set(src)
    with pytest.raises(ValueError, match='no ResNet-50 weights'):
        moco_to_resnet({'fc.weight': torch.zeros(1)})


def test_encoder_stays_frozen_and_head_trains():
    torch.manual_seed(0)
    teacher = FrozenImageTeacher(dim=8)
    teacher.train()
    assert not teacher.encoder.training and teacher.head.training
    images = torch.randint(0, 256, (2, 3, 32, 48), dtype=torch.uint8)
    out = teacher(images)
    assert out.shape == (2, 8, 32, 48)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2, 32, 48))
    out.sum().backward()
    assert teacher.head.proj.weight.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in teacher.encoder.parameters())
    before = teacher.encoder.bn1.running_mean.clone()
    teacher(images)
    assert torch.equal(before, teacher.encoder.bn1.running_mean)  # frozen statistics
