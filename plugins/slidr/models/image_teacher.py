"""The frozen 2D teacher of SLidR and its trainable head.

``ResNet50`` uses torchvision's parameter names (``conv1``, ``bn1``,
``layerX.Y.convZ``, ``layerX.0.downsample.0/1``) so torchvision and MoCo-v2
state dicts load unchanged, without depending on torchvision. SLidR replaces
the strides of layers 2-4 by dilation (2, 4, 8): output stride 4, 2048
channels.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Mapping, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ['Bottleneck', 'ResNet50', 'ImageHead', 'FrozenImageTeacher', 'moco_to_resnet']

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Bottleneck(nn.Module):
    """1×1 → 3×3 (stride, dilation) → 1×1 (×4 channels), residual."""

    expansion = 4

    def __init__(self,
                 inplanes: int,
                 planes: int,
                 stride: int = 1,
                 dilation: int = 1,
                 downsample: nn.Module = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """ResNet-50 trunk without ``avgpool``/``fc``.

    Args:
        dilate (Sequence[bool]): Replace the stride of layers 2, 3, 4 by
            dilation (SLidR: all True, output stride 4).

    ``forward(x (B, 3, H, W))`` → ``(B, 2048, H/4, W/4)`` with SLidR's setting.
    """

    def __init__(self, dilate: Sequence[bool] = (True, True, True)) -> None:
        super().__init__()
        if len(dilate) != 3:
            raise ValueError(f'dilate needs 3 flags (layers 2-4), got {dilate}')
        self.inplanes, self.dilation = 64, 1
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._layer(64, 3, 1, False)
        self.layer2 = self._layer(128, 4, 2, dilate[0])
        self.layer3 = self._layer(256, 6, 2, dilate[1])
        self.layer4 = self._layer(512, 3, 2, dilate[2])

    def _layer(self, planes: int, blocks: int, stride: int, dilate: bool) -> nn.Sequential:
        previous = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, previous, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes, 1, self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def moco_to_resnet(state: Mapping[str, Tensor]) -> 'OrderedDict[str, Tensor]':
    """MoCo-v2 checkpoint ``state_dict`` → ResNet-50 names: keep
    ``module.encoder_q.*`` (prefix removed), drop ``fc``. A plain torchvision
    state dict passes through without its ``fc``.

    Raises:
        ValueError: If nothing is left.
    """
    state = state.get('state_dict', state) if isinstance(state, Mapping) else state
    out = OrderedDict()
    prefix = 'module.encoder_q.'
    has_moco = any(k.startswith(prefix) for k in state)
    for key, value in state.items():
        if has_moco:
            if not key.startswith(prefix):
                continue
            key = key[len(prefix):]
        if key.startswith('fc.'):
            continue
        out[key] = value
    if not out:
        raise ValueError('no ResNet-50 weights found (expected module.encoder_q.* or '
                         'torchvision names)')
    return out


class ImageHead(nn.Module):
    """Conv 1×1 (2048 → D, bias) → ×4 bilinear (align_corners=True) → L2 norm."""

    def __init__(self, in_channels: int = 2048, dim: int = 64, upsample: int = 4) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, 1, bias=True)
        self.upsample = upsample

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)
        x = F.interpolate(x, scale_factor=self.upsample, mode='bilinear', align_corners=True)
        return F.normalize(x, dim=1)


class FrozenImageTeacher(nn.Module):
    """Pre-processing, the frozen encoder and the trainable head.

    The encoder has ``requires_grad=False`` and stays in eval mode (frozen
    batch-norm statistics) whatever ``train()`` is called with.

    ``forward(images (n, 3, H, W) uint8 or float 0-255)`` → ``(n, D, H', W')``
    unit-norm pixel features (``H' = 4·⌈H/4⌉``-ish: output stride 4, ×4).
    """

    def __init__(self, dim: int = 64, encoder: nn.Module = None) -> None:
        super().__init__()
        self.encoder = encoder if encoder is not None else ResNet50()
        self.head = ImageHead(2048, dim)
        self.register_buffer(
            'mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer(
            'std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.encoder.requires_grad_(False)
        self.encoder.eval()

    def train(self, mode: bool = True) -> 'FrozenImageTeacher':
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, images: Tensor) -> Tensor:
        x = (images.float() - self.mean) / self.std
        with torch.no_grad():
            feats = self.encoder(x)
        return self.head(feats)

    def load_encoder(self, state: Mapping[str, Tensor]) -> Tuple[list, list]:
        """Load MoCo-v2 / torchvision weights into the encoder (strict).

        Raises:
            RuntimeError: On missing or unexpected keys.
        """
        return self.encoder.load_state_dict(moco_to_resnet(state), strict=True)
