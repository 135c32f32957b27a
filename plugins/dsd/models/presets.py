"""Where DSD taps sit in each supported network.

A preset maps each of the eight tap slots to a module path and says whether
heads are shared between taps of the same level (same channels and scale).
Channels and scales are not written down here: a shape probe reads them off
the actual network (:func:`probe_taps`), so any filter sizes work.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from plugins.core.taps import Taps, TapSpec

from ..functional import TAP_SLOTS

__all__ = ['PRESETS', 'Preset', 'TapInfo', 'probe_taps', 'unet_preset_paths']


@dataclass(frozen=True)
class Preset:
    """Tap paths of one network family.

    Attributes:
        taps (dict): slot → :class:`TapSpec`.
        shared_heads (bool): Share a head between taps of equal channels and
            scale (one head per level).
        divisor (int): Spatial sizes must be divisible by this (at least; the
            largest probed tap scale also applies).
        kaiming_heads (bool): ``kaiming_normal_(a=0.01)`` head init (DynUNet).
        spatial_dims (int): 2 or 3 for a dimension-specific network, 0 for any.
    """

    taps: Dict[str, TapSpec]
    shared_heads: bool
    divisor: int
    kaiming_heads: bool = False
    spatial_dims: int = 0


@dataclass(frozen=True)
class TapInfo:
    """What the probe measured for one slot."""

    spec: TapSpec
    channels: int
    scale: int


_DYNUNET = Preset(
    {
        'enc1': TapSpec('input_block'),
        'enc2': TapSpec('downsamples.0'),
        'enc3': TapSpec('downsamples.1'),
        'enc4': TapSpec('downsamples.2'),
        'dec4': TapSpec('bottleneck'),
        'dec3': TapSpec('upsamples.0'),
        'dec2': TapSpec('upsamples.1'),
        'dec1': TapSpec('upsamples.2')
    },
    True,
    16,
    kaiming_heads=True)

_UNETR = Preset(
    {
        'enc1': TapSpec('encoder1'),
        'enc2': TapSpec('encoder2'),
        'enc3': TapSpec('encoder3'),
        'enc4': TapSpec('encoder4'),
        # the ViT output as a volume: the first input of decoder5
        'dec4': TapSpec('decoder5', what='input', index=0),
        'dec3': TapSpec('decoder5'),
        'dec2': TapSpec('decoder4'),
        'dec1': TapSpec('decoder3')
    },
    False,
    16)

_SWINUNETR = Preset(
    {
        'enc1': TapSpec('encoder1'),
        'enc2': TapSpec('encoder2'),
        'enc3': TapSpec('encoder3'),
        'enc4': TapSpec('encoder4'),
        'dec4': TapSpec('decoder5'),
        'dec3': TapSpec('decoder4'),
        'dec2': TapSpec('decoder3'),
        'dec1': TapSpec('decoder2')
    }, True, 32)

# MONAI VNet (fixed widths 16..256): separate heads; the reference builds a
# ninth head it never uses, which is not built here.
_VNET = Preset(
    {
        'enc1': TapSpec('in_tr'),
        'enc2': TapSpec('down_tr32'),
        'enc3': TapSpec('down_tr64'),
        'enc4': TapSpec('down_tr128'),
        'dec4': TapSpec('down_tr256'),
        'dec3': TapSpec('up_tr256'),
        'dec2': TapSpec('up_tr128'),
        'dec1': TapSpec('up_tr64')
    }, False, 16)


def unet_preset_paths(depth: int = 4) -> Dict[str, TapSpec]:
    """MONAI ``UNet`` taps: walk the ``SkipConnection.submodule`` chain.

    Raises:
        ValueError: For fewer than four down-samplings.
    """
    if depth != 4:
        raise ValueError(f'the DSD UNet preset needs 4 down-samplings (5 channel '
                         f'entries), got {depth}')
    sub = lambda k: 'model' + '.1.submodule' * k  # noqa: E731
    return {
        'enc1': TapSpec('model.0'),
        'enc2': TapSpec(sub(1) + '.0'),
        'enc3': TapSpec(sub(2) + '.0'),
        'enc4': TapSpec(sub(3) + '.0'),
        'dec4': TapSpec(sub(4)),
        'dec3': TapSpec(sub(3) + '.2'),
        'dec2': TapSpec(sub(2) + '.2'),
        'dec1': TapSpec(sub(1) + '.2')
    }


# mmseg 1.x ``UNet`` backbone (2D): encoder.j / decoder.j are level j; the
# backbone returns [encoder.4, decoder.3, decoder.2, decoder.1, decoder.0].
_MMSEG_UNET = Preset(
    {
        'enc1': TapSpec('encoder.0'),
        'enc2': TapSpec('encoder.1'),
        'enc3': TapSpec('encoder.2'),
        'enc4': TapSpec('encoder.3'),
        'dec4': TapSpec('encoder.4'),
        'dec3': TapSpec('decoder.3'),
        'dec2': TapSpec('decoder.2'),
        'dec1': TapSpec('decoder.1')
    },
    True,
    16,
    spatial_dims=2)

PRESETS: Dict[str, Preset] = {
    'dynunet': _DYNUNET,
    'unet': Preset(unet_preset_paths(4), True, 32),
    'unetr': _UNETR,
    'swinunetr': _SWINUNETR,
    'vnet': _VNET,
    'mmseg_unet': _MMSEG_UNET,
}


def _first_conv_in_channels(network: nn.Module) -> int:
    for m in network.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            return m.in_channels
    raise ValueError(f'{type(network).__name__} has no convolution to read the '
                     f'input channels from; pass in_channels')


def probe_taps(network: nn.Module,
               preset: Preset,
               size: int,
               spatial_dims: int = 3,
               in_channels: int = 0) -> Tuple[Dict[str, TapInfo], Optional[int]]:
    """Run one zero input through ``network`` and read each tap's shape.

    Args:
        network (nn.Module): The stock network.
        preset (Preset): Its tap paths.
        size (int): Input side for the probe (divisible by ``preset.divisor``).
        spatial_dims (int): 2 or 3.
        in_channels (int): Input channels (0: read from the first conv).

    Returns:
        tuple: ``(slot → TapInfo, output channels)``; the channels are None
        when the network does not return a tensor (a backbone's list).

    Raises:
        MissingModuleError: If a preset path does not exist in the network.
        ValueError: If a tap's size does not divide the input size.
    """
    in_channels = in_channels or _first_conv_in_channels(network)
    was_training = network.training
    network.eval()
    try:
        with Taps(network, preset.taps, detach=True) as taps, torch.no_grad():
            param = next(network.parameters())
            out = network(
                torch.zeros(
                    1,
                    in_channels,
                    *(size, ) * spatial_dims,
                    dtype=param.dtype,
                    device=param.device))
            info = {}
            for slot in TAP_SLOTS:
                feat = taps[slot]
                s = size // feat.shape[-1]
                if feat.shape[-1] * s != size:
                    raise ValueError(f'tap {slot} ({preset.taps[slot].path}) has size '
                                     f'{feat.shape[-1]}, which does not divide {size}')
                info[slot] = TapInfo(preset.taps[slot], int(feat.shape[1]), s)
    finally:
        network.train(was_training)
    return info, int(out.shape[1]) if isinstance(out, torch.Tensor) else None
