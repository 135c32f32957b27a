"""A sparse 3D U-Net in pure PyTorch (gather–GEMM–scatter), for SLidR's student.

No sparse-convolution library is needed (MinkowskiEngine, torchsparse and
mmcv's sparse ops have no usable CPU build here): voxels are rows of
``coords (V, 4) = (batch, x, y, z)`` with features ``(V, C)``; neighbours are
found by hashing coordinates into sorted int64 keys (``searchsorted``), and each
kernel offset is one matrix product scattered with ``index_add``. The maths
equals dense ``conv3d`` / ``conv_transpose3d`` evaluated at the active sites
(tests check values and gradients), so it is exact, if slower than a CUDA
library; it runs on CPU at demo scale and on GPU unchanged.

Layout of the kernels: ``weight (k³, C_in, C_out)``, offsets in
lexicographic ``(dx, dy, dz)`` order.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ['SparseVoxels', 'SubMConv3d', 'DownConv3d', 'UpConv3d', 'SparseBatchNorm',
           'BasicBlock', 'SparseUNet']


@dataclass
class SparseVoxels:
    """Active voxels of one resolution level.

    Attributes:
        coords (Tensor): ``(V, 4)`` long ``(batch, x, y, z)``, unique rows.
        feats (Tensor): ``(V, C)``.
        cache (dict): Kernel maps shared by the layers of this level.
    """

    coords: Tensor
    feats: Tensor
    cache: Dict = field(default_factory=dict)

    def replace(self, feats: Tensor) -> 'SparseVoxels':
        """Same sites (and cached maps), new features."""
        if feats.shape[0] != self.coords.shape[0]:
            raise ValueError(f'{feats.shape[0]} feature rows for {self.coords.shape[0]} voxels')
        return SparseVoxels(self.coords, feats, self.cache)


def _keys(coords: Tensor, lo: Tensor, span: Tensor) -> Tensor:
    c = coords - lo
    return ((c[:, 0] * span[1] + c[:, 1]) * span[2] + c[:, 2]) * span[3] + c[:, 3]


def _neighbour_map(coords: Tensor, kernel: int) -> List[Tuple[Tensor, Tensor]]:
    """Per offset, (input rows, output rows) with ``coords[in] = coords[out] + offset``."""
    r = kernel // 2
    lo = coords.min(0).values - torch.tensor([0, r, r, r], device=coords.device)
    span = coords.max(0).values + torch.tensor([1, r + 1, r + 1, r + 1], device=coords.device) - lo
    keys = _keys(coords, lo, span)
    order = torch.argsort(keys)
    sorted_keys = keys[order]
    pairs = []
    rng = range(-r, kernel - r)
    for dx, dy, dz in itertools.product(rng, rng, rng):
        shifted = coords + torch.tensor([0, dx, dy, dz], device=coords.device)
        query = _keys(shifted, lo, span)
        pos = torch.searchsorted(sorted_keys, query).clamp(max=keys.numel() - 1)
        hit = sorted_keys[pos] == query
        out_rows = torch.nonzero(hit)[:, 0]
        pairs.append((order[pos[hit]], out_rows))
    return pairs


class SubMConv3d(nn.Module):
    """Submanifold convolution: outputs at the input sites only.

    Args:
        in_channels, out_channels (int): Feature sizes.
        kernel (int): Odd kernel size (3; 1 is a per-voxel linear map).
        bias (bool): Add a bias.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3,
                 bias: bool = False) -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f'submanifold kernels are odd, got {kernel}')
        self.kernel = kernel
        self.weight = nn.Parameter(torch.empty(kernel ** 3, in_channels, out_channels))
        bound = 1.0 / math.sqrt(in_channels * kernel ** 3)
        nn.init.uniform_(self.weight, -bound, bound)
        self.bias = None
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound))

    def forward(self, x: SparseVoxels) -> SparseVoxels:
        key = ('subm', self.kernel)
        if key not in x.cache:
            x.cache[key] = _neighbour_map(x.coords, self.kernel)
        out = x.feats.new_zeros(x.feats.shape[0], self.weight.shape[2])
        for w, (rows_in, rows_out) in zip(self.weight, x.cache[key]):
            if rows_in.numel():
                out = out.index_add(0, rows_out, x.feats[rows_in] @ w)
        if self.bias is not None:
            out = out + self.bias
        return x.replace(out)


def _parents(coords: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Coarse sites ``(b, ⌊x/2⌋, ⌊y/2⌋, ⌊z/2⌋)``, each fine site's parent row and
    its offset id ``4·(x mod 2) + 2·(y mod 2) + (z mod 2)``."""
    coarse = torch.cat([coords[:, :1], torch.div(coords[:, 1:], 2, rounding_mode='floor')], 1)
    parents, inverse = torch.unique(coarse, dim=0, return_inverse=True)
    odd = coords[:, 1:] - 2 * coarse[:, 1:]
    return parents, inverse, odd[:, 0] * 4 + odd[:, 1] * 2 + odd[:, 2]


class DownConv3d(nn.Module):
    """Kernel 2, stride 2 convolution onto the coarse sites."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(8, in_channels, out_channels))
        bound = 1.0 / math.sqrt(in_channels * 8)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: SparseVoxels) -> Tuple[SparseVoxels, Tuple[Tensor, Tensor]]:
        """Returns the coarse voxels and ``(parent, offset)`` of every fine site
        (what :class:`UpConv3d` needs to come back)."""
        if 'down' not in x.cache:
            x.cache['down'] = _parents(x.coords)
        parents, inverse, offset = x.cache['down']
        out = x.feats.new_zeros(parents.shape[0], self.weight.shape[2])
        for k in range(8):
            rows = torch.nonzero(offset == k)[:, 0]
            if rows.numel():
                out = out.index_add(0, inverse[rows], x.feats[rows] @ self.weight[k])
        return SparseVoxels(parents, out), (inverse, offset)


class UpConv3d(nn.Module):
    """Kernel 2, stride 2 transposed convolution back onto given fine sites."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(8, in_channels, out_channels))
        bound = 1.0 / math.sqrt(in_channels * 8)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: SparseVoxels, fine: SparseVoxels,
                link: Tuple[Tensor, Tensor]) -> SparseVoxels:
        inverse, offset = link
        out = x.feats.new_zeros(fine.coords.shape[0], self.weight.shape[2])
        for k in range(8):
            rows = torch.nonzero(offset == k)[:, 0]
            if rows.numel():
                out = out.index_copy(0, rows, x.feats[inverse[rows]] @ self.weight[k])
        return fine.replace(out)


class SparseBatchNorm(nn.BatchNorm1d):
    """Batch norm over the voxel rows."""

    def forward(self, x: SparseVoxels) -> SparseVoxels:  # type: ignore[override]
        return x.replace(super().forward(x.feats))


def _relu(x: SparseVoxels) -> SparseVoxels:
    return x.replace(F.relu(x.feats))


class BasicBlock(nn.Module):
    """Two 3×3×3 submanifold convs with batch norm and a residual."""

    def __init__(self, in_channels: int, out_channels: int, momentum: float = 0.1) -> None:
        super().__init__()
        self.conv1 = SubMConv3d(in_channels, out_channels)
        self.bn1 = SparseBatchNorm(out_channels, momentum=momentum)
        self.conv2 = SubMConv3d(out_channels, out_channels)
        self.bn2 = SparseBatchNorm(out_channels, momentum=momentum)
        self.downsample = None
        if in_channels != out_channels:
            self.downsample = nn.ModuleList([SubMConv3d(in_channels, out_channels, 1),
                                             SparseBatchNorm(out_channels, momentum=momentum)])

    def forward(self, x: SparseVoxels) -> SparseVoxels:
        identity = x if self.downsample is None else self.downsample[1](self.downsample[0](x))
        out = _relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return out.replace(F.relu(out.feats + identity.feats))


class SparseUNet(nn.Module):
    """The SR-UNet / MinkUNet34C design on :class:`SparseVoxels`.

    Stem 3×3×3 conv (``init_dim``) + BN + ReLU; four encoder stages (stride-2
    kernel-2 conv + BN + ReLU, then ``layers[i]`` basic blocks of
    ``planes[i]`` channels); four decoder stages (stride-2 kernel-2
    transposed conv + BN + ReLU, concatenation with the skip of the same
    resolution, then basic blocks); a final 1×1 layer to ``out_channels``.

    Args:
        in_channels (int): Input features per voxel (1: intensity).
        out_channels (int): Output features (64 for SLidR's head).
        layers, planes: Blocks and channels per stage, encoder then decoder
            (SR-UNet34C: ``(2, 3, 4, 6, 2, 2, 2, 2)``,
            ``(32, 64, 128, 256, 256, 128, 96, 96)``).
        init_dim (int): Stem channels (32).
        momentum (float): Batch-norm momentum (0.05 pre-training).
        normalize (bool): L2-normalise the output rows (SLidR's 3D head).

    ``forward(coords (V, 4), feats (V, in))`` → ``(V, out)`` at the input sites.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 64,
                 layers: Sequence[int] = (2, 3, 4, 6, 2, 2, 2, 2),
                 planes: Sequence[int] = (32, 64, 128, 256, 256, 128, 96, 96),
                 init_dim: int = 32, momentum: float = 0.05, normalize: bool = True) -> None:
        super().__init__()
        if len(layers) != 8 or len(planes) != 8:
            raise ValueError('layers and planes need 8 entries (4 encoder + 4 decoder stages)')
        self.normalize = normalize
        self.stem = SubMConv3d(in_channels, init_dim)
        self.stem_bn = SparseBatchNorm(init_dim, momentum=momentum)
        self.down, self.down_bn, self.enc = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        skips = [init_dim]
        c = init_dim
        for i in range(4):
            self.down.append(DownConv3d(c, c))
            self.down_bn.append(SparseBatchNorm(c, momentum=momentum))
            blocks = []
            for j in range(layers[i]):
                blocks.append(BasicBlock(c if j == 0 else planes[i], planes[i], momentum))
            self.enc.append(nn.Sequential(*blocks))
            c = planes[i]
            skips.append(c)
        self.up, self.up_bn, self.dec = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for i in range(4):
            p = planes[4 + i]
            self.up.append(UpConv3d(c, p))
            self.up_bn.append(SparseBatchNorm(p, momentum=momentum))
            skip = skips[3 - i]
            blocks = [BasicBlock(p + skip if j == 0 else p, p, momentum) for j in range(layers[4 + i])]
            self.dec.append(nn.Sequential(*blocks))
            c = p
        self.final = SubMConv3d(c, out_channels, 1, bias=True)

    def forward(self, coords: Tensor, feats: Tensor) -> Tensor:
        if coords.dim() != 2 or coords.shape[1] != 4 or coords.shape[0] != feats.shape[0]:
            raise ValueError(f'coords must be (V, 4) = (batch, x, y, z) with one row per '
                             f'feature row; got {tuple(coords.shape)} and {tuple(feats.shape)}')
        if coords.shape[0] == 0:
            raise ValueError('empty scan: no voxels to process')
        x = SparseVoxels(coords.long(), feats)
        x = _relu(self.stem_bn(self.stem(x)))
        levels, links = [x], []
        for down, bn, enc in zip(self.down, self.down_bn, self.enc):
            y, link = down(x)
            x = enc(_relu(bn(y)))
            levels.append(x)
            links.append(link)
        for i, (up, bn, dec) in enumerate(zip(self.up, self.up_bn, self.dec)):
            fine = levels[3 - i]
            y = _relu(bn(up(x, fine, links[3 - i])))
            x = dec(y.replace(torch.cat([y.feats, fine.feats], 1)))
        out = self.final(x).feats
        return F.normalize(out, dim=1) if self.normalize else out
