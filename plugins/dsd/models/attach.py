"""Attach DSD to a stock network through forward hooks (no forked network).

    taps = DSDTaps(net, 'dynunet', num_classes=3)     # heads become net.dsd_heads
    loss_fn = DSDLoss(taps, temperature=3.0)          # plugins.dsd.losses
    loss = loss_fn(net(x), y)                          # net(x) stays a plain tensor

The hooks turn each tap's feature into full-resolution class logits at once
(only the logits are kept) and are inert in eval mode, so inference, sliding
windows and metrics see the stock network. MONAI bundles can build both by
``"_target_": "plugins.dsd.DSDTaps"`` / ``"plugins.dsd.DSDLoss"``.
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import torch
from torch import Tensor, nn

from plugins.core.taps import Taps, TapSpec

from ..functional import TAP_SLOTS
from .heads import DSDHead, kaiming_init_
from .presets import PRESETS, probe_taps

__all__ = ['DSDTaps', 'HeadsNotTrainedError', 'MODES']

#: what the hooks record: full-resolution logits, or native features for the lean strategy
MODES = ('straightforward', 'lean')


def _probe_size(network: nn.Module, preset_name: str, divisor: int) -> int:
    if preset_name == 'unetr':
        feat = getattr(network, 'feat_size', None)
        patch = getattr(network, 'patch_size', None)
        if feat is None or patch is None:
            raise ValueError('cannot read img_size from this UNETR; pass probe_size=img_size')
        return int(feat[0]) * int(patch[0] if isinstance(patch, (tuple, list)) else patch)
    return 2 * divisor


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f'the DSD strategy must be one of {MODES}, got {mode!r}')


class HeadsNotTrainedError(RuntimeError):
    """The DSD heads stay unchanged while the network trains."""


class _HeadWatch:
    """Catches DSD heads that the optimizer does not hold.

    An optimizer built from ``network.parameters()`` before DSD was attached
    trains the network but never the heads, silently. During the first
    training forwards this compares one network tensor and the heads with
    their values at the first forward (a few device syncs, then never again):
    once the network has changed, the heads must have changed too.
    """

    def __init__(self, network: nn.Module, heads: nn.Module, max_checks: int = 20) -> None:
        self.heads = [p for p in heads.parameters() if p.requires_grad]
        own = {id(p) for p in heads.parameters()}
        self.body = next((p for p in network.parameters() if p.requires_grad and id(p) not in own),
                         None)
        self.first = None
        self.left = max_checks

    def check(self) -> bool:
        """True once settled (heads changed, or nothing to watch).

        Raises:
            HeadsNotTrainedError: If the network changed and no head did.
        """
        if not self.heads or self.body is None:
            return True
        with torch.no_grad():
            if self.first is None:
                self.first = (self.body.detach().clone(), [p.detach().clone() for p in self.heads])
                return False
            body, heads = self.first
            if torch.equal(body, self.body):
                self.left -= 1
                return self.left <= 0  # the network is not training (yet): keep watching
            if any(not torch.equal(h, p) for h, p in zip(heads, self.heads)):
                return True
        raise HeadsNotTrainedError(
            'the DSD heads did not change while the network trained: the optimizer does not '
            'hold them (it was built from network.parameters() before DSD was attached). '
            'Build the optimizer after DSDTaps / attach_dsd, e.g. in a MONAI bundle '
            '"params": "$@dsd.network.parameters()", or add '
            'network.dsd_heads.parameters() to it; freeze them with requires_grad=False '
            'if this is intended')


class DSDTaps:
    """Heads and forward hooks that give the eight DSD tap logits.

    Args:
        network (nn.Module): A stock network (MONAI ``DynUNet``, ``UNet``,
            ``UNETR``, ``SwinUNETR``). It gets a ``dsd_heads`` submodule (so
            optimizers, checkpoints and DDP see the heads) and is otherwise
            unchanged.
        preset (str): ``'dynunet'``, ``'unet'``, ``'unetr'`` or ``'swinunetr'``.
        num_classes (int, optional): ``C``; default the network's output
            channels (checked against them).
        spatial_dims (int): 3 (or 2).
        probe_size (int, optional): Input side of the shape probe (default
            ``img_size`` for UNETR, else twice the preset's divisor).
        in_channels (int): Input channels for the probe (0: read them off).
        mode (str): What the hooks record for the loss's execution strategy:
            ``'straightforward'`` (the tap logits, at once) or ``'lean'`` (the
            native-resolution features; the loss recomputes each head and term
            in backward: same loss, a fraction of the memory). A
            :class:`~plugins.dsd.losses.DSDLoss` built with ``strategy=``
            sets it.

    Raises:
        ValueError: On an unknown preset or mode, or a class-count mismatch.
        MissingModuleError: If a tap path is missing from the network.
    """

    def __init__(self,
                 network: nn.Module,
                 preset: str,
                 num_classes: Optional[int] = None,
                 spatial_dims: int = 3,
                 probe_size: Optional[int] = None,
                 in_channels: int = 0,
                 mode: str = 'straightforward') -> None:
        _check_mode(mode)
        if preset not in PRESETS:
            raise ValueError(f'unknown DSD preset {preset!r}; choose from {sorted(PRESETS)}')
        if getattr(network, 'deep_supervision', False):
            raise ValueError('DynUNet(deep_supervision=True) returns stacked maps; DSD '
                             'needs deep_supervision=False')
        self.network = network
        self.preset = PRESETS[preset]
        if spatial_dims != self.preset.spatial_dims and self.preset.spatial_dims:
            raise ValueError(f'preset {preset!r} is {self.preset.spatial_dims}D; got '
                             f'spatial_dims={spatial_dims}')
        size = probe_size or _probe_size(network, preset, self.preset.divisor)
        info, out_channels = probe_taps(network, self.preset, size, spatial_dims, in_channels)
        if out_channels is None:  # e.g. a backbone returning a feature list
            if num_classes is None:
                raise ValueError(f'{type(network).__name__} does not return class '
                                 f'logits; pass num_classes')
            out_channels = num_classes
        if num_classes is not None and num_classes != out_channels:
            raise ValueError(f'num_classes={num_classes} but the network outputs '
                             f'{out_channels} channels')
        self.num_classes = out_channels
        self.info = info
        self.divisor = max([self.preset.divisor] + [i.scale for i in info.values()])
        heads = nn.ModuleDict()
        self.head_of: Dict[str, str] = {}
        for slot in TAP_SLOTS:
            tap = info[slot]
            key = (f'L{int(math.log2(tap.scale))}' if self.preset.shared_heads else slot)
            if key in heads and heads[key].conv.in_channels != tap.channels:
                key = f'{key}_{slot}'
            if key not in heads:
                head = DSDHead(tap.channels, self.num_classes, tap.scale, spatial_dims)
                if self.preset.kaiming_heads:
                    kaiming_init_(head)
                heads[key] = head
            self.head_of[slot] = key
        param = next(network.parameters())
        network.add_module('dsd_heads', heads.to(device=param.device, dtype=param.dtype))
        network.training_only_modules = ('dsd_heads', )
        self.heads = {slot: heads[self.head_of[slot]] for slot in TAP_SLOTS}
        self.mode = mode
        self.taps = self._taps(mode)
        self._root = network.register_forward_pre_hook(self._start)
        self._watch = _HeadWatch(network, heads)

    def _taps(self, mode: str) -> Taps:
        specs = {
            slot:
            TapSpec(
                self.info[slot].spec.path,
                self.info[slot].spec.what,
                self.info[slot].spec.index,
                transform=None if mode == 'lean' else self.heads[slot])
            for slot in TAP_SLOTS
        }
        return Taps(self.network, specs, keep='last')

    def set_mode(self, mode: str) -> None:
        """Record what ``mode`` needs from the next forward on (see the class).

        Raises:
            ValueError: On an unknown mode.
        """
        _check_mode(mode)
        if mode != self.mode:
            self.taps.remove()
            self.taps = self._taps(mode)
            self.mode = mode

    def _start(self, module: nn.Module, args) -> None:
        self.taps.clear()
        self.taps.enabled = module.training
        if module.training and self._watch is not None and self._watch.check():
            self._watch = None  # settled: the heads train
        if module.training and args and isinstance(args[0], Tensor):
            spatial = tuple(args[0].shape[2:])
            div = self.divisor
            if any(n % div for n in spatial):
                raise ValueError(f'DSD needs spatial sizes divisible by {div} for this '
                                 f'network (its taps are up-sampled by up to {div}x '
                                 f'without interpolation); got input shape '
                                 f'{tuple(args[0].shape)}')

    def pop_logits(self) -> Dict[str, Tensor]:
        """The eight tap logits (lean mode: features) of the last training
        forward; clears them.

        Raises:
            KeyError: If a slot is missing (no training-mode forward since the
                last call).
        """
        logits = self.taps.pop_all()
        missing = [s for s in TAP_SLOTS if s not in logits]
        if missing:
            raise KeyError(f'DSD tap logits missing for {missing}: run one forward of the '
                           f'network in train mode before each loss call')
        return logits

    def remove(self) -> None:
        """Remove the hooks (the heads stay as ``network.dsd_heads``)."""
        self.taps.remove()
        self._root.remove()

    def __repr__(self) -> str:
        rows = ', '.join(f'{s}={i.spec.path}({i.channels}@{i.scale})' for s, i in self.info.items())
        return f'DSDTaps({rows})'
