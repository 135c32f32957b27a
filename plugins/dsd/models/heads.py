"""DSD projection heads: tap feature → full-resolution class logits (§4)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ['DSDHead', 'kaiming_init_']


class DSDHead(nn.Module):
    """``h(f) = U^(n)(W∗f + b)`` with one transposed convolution ``U`` reused
    ``n = log2(scale)`` times.

    ``W`` is a 1×1(×1) convolution ``F → C`` with bias; ``U`` is a transposed
    convolution ``C → C`` with kernel = stride = 2 (kernel = stride = 1 for
    ``scale = 1``, applied once). Parameter keys: ``conv.weight``
    ``(C, F, 1, 1[, 1])``, ``conv.bias``, ``up.weight`` ``(C, C, k, k[, k])``,
    ``up.bias``.

    Args:
        in_channels (int): ``F``.
        num_classes (int): ``C``.
        scale (int): Input size ÷ tap size, a power of two ≥ 1.
        spatial_dims (int): 2 or 3.

    Raises:
        ValueError: On a scale that is not a power of two, or bad dims/sizes.
    """

    def __init__(self,
                 in_channels: int,
                 num_classes: int,
                 scale: int,
                 spatial_dims: int = 3) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f'spatial_dims must be 2 or 3, got {spatial_dims}')
        if scale < 1 or scale & (scale - 1):
            raise ValueError(f'scale must be a power of two >= 1, got {scale}')
        if in_channels < 1 or num_classes < 1:
            raise ValueError(f'in_channels and num_classes must be >= 1, got '
                             f'{in_channels}, {num_classes}')
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        up = nn.ConvTranspose3d if spatial_dims == 3 else nn.ConvTranspose2d
        k = 1 if scale == 1 else 2
        self.scale = scale
        self.repeats = 1 if scale == 1 else int(math.log2(scale))
        self.conv = conv(in_channels, num_classes, kernel_size=1, bias=True)
        self.up = up(num_classes, num_classes, kernel_size=k, stride=k, padding=0, bias=True)

    def forward(self, feature: Tensor) -> Tensor:
        """``(B, F, *s)`` → ``(B, C, *s·scale)``; ``last(trunk(feature))``."""
        return self.last(self.trunk(feature))

    def trunk(self, feature: Tensor) -> Tensor:
        """Everything but the last application of ``U``: ``(B, C, *S/2)`` for
        ``scale ≥ 2``, ``(B, C, *S)`` for ``scale = 1``.

        The 1×1(×1) maps run as one batched matrix product (several times
        faster on CPU than a 3D convolution library call, same parameters).
        """
        x = _pointwise(feature, self.conv.weight.flatten(1), self.conv.bias)
        for _ in range(self.repeats - 1):
            x = self.up(x)
        return x

    def last(self, x: Tensor) -> Tensor:
        """The last application of ``U`` (the only full-resolution step)."""
        if self.scale == 1:
            # kernel-1 transposed conv: out_c' = Σ_c x_c·U[c, c'] + b_c'
            return _pointwise(x, self.up.weight.flatten(1).t(), self.up.bias)
        return self.up(x)

    def extra_repr(self) -> str:
        return f'scale={self.scale}'


def _pointwise(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``(B, F, *s)`` → ``(B, C, *s)`` by ``weight (C, F)`` and ``bias (C)``."""
    flat = x.flatten(2)
    out = torch.baddbmm(
        bias.view(1, -1, 1).to(flat.dtype).expand(x.shape[0], -1, flat.shape[2]),
        weight.to(flat.dtype).expand(x.shape[0], -1, -1), flat)
    return out.view(x.shape[0], weight.shape[0], *x.shape[2:])


def kaiming_init_(head: DSDHead, a: float = 0.01) -> DSDHead:
    """The DynUNet preset's init: ``kaiming_normal_(a=0.01)``, zero biases."""
    for m in (head.conv, head.up):
        nn.init.kaiming_normal_(m.weight, a=a)
        nn.init.zeros_(m.bias)
    return head
