"""A sparse 3D U-Net in pure PyTorch (gather–GEMM–scatter), for SLidR's student.

No sparse-convolution library is needed (MinkowskiEngine, torchsparse and
mmcv's sparse ops have no usable CPU build here): voxels are rows of
``coords (V, 4) = (batch, x, y, z)`` with features ``(V, C)``; neighbours are
found for all kernel offsets at once by packing coordinates into sorted int64
keys (one ``searchsorted``). A convolution then runs in a few passes over
groups of offsets, each one gather, one matrix product per offset into a shared
buffer and one ``index_add``, with a written-out backward (:func:`sparse_conv`);
kernel maps are built once per resolution level and shared by its layers, so
host synchronisations do not grow with depth. The
maths equals dense ``conv3d`` / ``conv_transpose3d`` evaluated at the active
sites (tests check values and gradients), so it is exact, if slower than a
CUDA library; the same code runs on CPU and GPU.

Layout of the kernels: ``weight (k³, C_in, C_out)``, offsets in
lexicographic ``(dx, dy, dz)`` order.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    'CHUNK_BYTES', 'SparseVoxels', 'KernelMap', 'submanifold_map', 'stride2_maps', 'sparse_conv',
    'check_key_range', 'SubMConv3d', 'DownConv3d', 'UpConv3d', 'SparseBatchNorm', 'BasicBlock',
    'SparseUNet'
]


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


@dataclass(frozen=True)
class KernelMap:
    """Which input row feeds which output row through which kernel offset.

    Pairs are grouped by offset: offset ``k`` owns the rows
    ``bounds[k][0]:bounds[k][1]`` of ``in_rows`` / ``out_rows``. An offset that
    maps every row onto itself (a submanifold kernel's centre, a 1×1 kernel) is
    kept out of the pairs as ``identity`` and costs one dense product.

    Attributes:
        in_rows, out_rows (Tensor): ``(P,)`` long.
        bounds (tuple): ``K`` pairs ``(start, end)`` into the pair rows.
        n_out (int): Output rows.
        identity (int | None): The offset applied row to row (needs ``n_out``
            equal to the input rows), or None.
    """

    in_rows: Tensor
    out_rows: Tensor
    bounds: Tuple[Tuple[int, int], ...]
    n_out: int
    identity: Optional[int] = None

    @staticmethod
    def from_counts(in_rows: Tensor,
                    out_rows: Tensor,
                    counts: Sequence[int],
                    n_out: int,
                    identity: Optional[int] = None) -> 'KernelMap':
        ends = list(itertools.accumulate(counts))
        bounds = tuple(zip([0] + ends[:-1], ends))
        return KernelMap(in_rows, out_rows, bounds, n_out, identity)

    def transposed(self, n_out: int) -> 'KernelMap':
        """The same pairs read backwards (a stride-2 conv's transposed conv)."""
        return KernelMap(self.out_rows, self.in_rows, self.bounds, n_out, self.identity)


def _keys(coords: Tensor, lo: Tensor, span: Tensor) -> Tensor:
    """One int64 per row of ``coords (V, 4)``, lexicographic in ``(b, x, y, z)``
    for coordinates inside ``[lo, lo + span)``."""
    c = coords - lo
    return ((c[:, 0] * span[1] + c[:, 1]) * span[2] + c[:, 2]) * span[3] + c[:, 3]


def check_key_range(coords: Tensor) -> None:
    """One host read: the coordinate ranges (with a kernel's margin) must pack
    into int64 keys.

    Raises:
        ValueError: Naming the ranges when their product reaches 2⁶².
    """
    # in Python integers: int64 arithmetic on a wrapped coordinate (the floor of
    # a NaN or inf) would wrap again and pass
    highs, lows = torch.stack([coords.max(0).values, coords.min(0).values]).tolist()
    spans = [hi - lo + 3 for hi, lo in zip(highs, lows)]
    if math.prod(spans) >= 2**62:
        raise ValueError(f'voxel coordinates span {spans[1:]} cells per axis over {spans[0] - 2} '
                         f'scans, too many to pack into int64 keys; use coarser voxels or '
                         f'shift each scan to start near 0')


def _offsets(kernel: int, device: torch.device) -> Tensor:
    """``(k³, 3)`` offsets in lexicographic ``(dx, dy, dz)`` order, centred."""
    r = torch.arange(kernel, device=device) - kernel // 2
    return torch.cartesian_prod(r, r, r)


def submanifold_map(coords: Tensor, kernel: int) -> KernelMap:
    """Pairs with ``coords[in] = coords[out] + offset`` for every offset of a
    ``kernel``³ window, found for all offsets at once.

    Coordinates are shifted to be non-negative and packed into one int64 key
    per row (lexicographic, so ``key(c + o) = key(c) + key(o)``); the sorted keys
    are searched for the ``(k³ − 1)·V`` shifted queries in one ``searchsorted``.
    Two host synchronisations: the hit count and the per-offset counts.

    Args:
        coords (Tensor): ``(V, 4)`` long ``(batch, x, y, z)``, unique rows.
        kernel (int): Odd window size.

    Returns:
        KernelMap: ``identity`` is the centre offset ``(k³ − 1) / 2``.
    """
    v = coords.shape[0]
    k3 = kernel**3
    centre = k3 // 2
    if kernel == 1 or v == 0:
        empty = coords.new_zeros(0)
        return KernelMap.from_counts(empty, empty, [0] * k3, v, centre)
    r = kernel // 2
    pad = torch.tensor([0, r, r, r], device=coords.device)
    lo = coords.min(0).values - pad
    span = coords.max(0).values + pad + 1 - lo
    keys = _keys(coords, lo, span)
    order = torch.argsort(keys)
    sorted_keys = keys[order]
    offsets = _offsets(kernel, coords.device)
    step = torch.stack([span[2] * span[3], span[3], torch.ones_like(span[3])])
    shift = (offsets * step).sum(1)  # key(c + o) − key(c), (k³,)
    shift = torch.cat([shift[:centre], shift[centre + 1:]])
    query = (keys[None, :] + shift[:, None]).reshape(-1)  # (k³ − 1)·V, offset-major
    pos = torch.searchsorted(sorted_keys, query).clamp_(max=v - 1)
    hit = torch.nonzero(sorted_keys[pos] == query)[:, 0]
    which = torch.div(hit, v, rounding_mode='floor')  # ascending
    counts = _run_lengths(which, k3 - 1)
    counts.insert(centre, 0)
    return KernelMap.from_counts(order[pos[hit]], hit - which * v, counts, v, centre)


def _run_lengths(ids: Tensor, n: int) -> list:
    """Occurrences of ``0 … n − 1`` in the ascending ``ids``, as Python ints
    (one host read, no data-dependent kernel)."""
    ends = torch.searchsorted(ids, torch.arange(1, n + 1, device=ids.device))
    return torch.diff(ends, prepend=ends.new_zeros(1)).tolist()


def stride2_maps(coords: Tensor) -> Tuple[Tensor, KernelMap, KernelMap]:
    """Coarse sites ``(b, ⌊x/2⌋, ⌊y/2⌋, ⌊z/2⌋)`` and the kernel-2 stride-2 maps.

    Each fine site feeds its parent through offset
    ``4·(x mod 2) + 2·(y mod 2) + (z mod 2)``.

    Args:
        coords (Tensor): ``(V, 4)`` long fine sites.

    Returns:
        tuple: ``parents (V', 4)`` in lexicographic order, the fine → coarse
        map and its transpose (coarse → fine).
    """
    coarse = torch.cat([coords[:, :1], torch.div(coords[:, 1:], 2, rounding_mode='floor')], 1)
    lo = coarse.min(0).values
    span = coarse.max(0).values + 1 - lo
    keys, inverse = torch.unique(_keys(coarse, lo, span), return_inverse=True)
    parents = torch.empty_like(coarse[:keys.shape[0]])
    for axis in (3, 2, 1, 0):  # decode the sorted unique keys
        parents[:, axis] = keys % span[axis] + lo[axis]
        keys = torch.div(keys, span[axis], rounding_mode='floor')
    n = parents.shape[0]
    odd = coords[:, 1:] - 2 * coarse[:, 1:]
    offset = odd[:, 0] * 4 + odd[:, 1] * 2 + odd[:, 2]
    perm = torch.argsort(offset, stable=True)
    counts = _run_lengths(offset[perm], 8)
    down = KernelMap.from_counts(perm, inverse[perm], counts, n)
    return parents, down, down.transposed(coords.shape[0])


#: Bytes of gathered rows one pass of a sparse convolution holds, per device
#: type (others: ``default``). On the CPU, buffers past glibc's mmap threshold
#: are fresh pages each time and cost more to fault in than to fill, so the
#: pairs go through in offset groups of a few MiB; on a GPU fewer, larger
#: passes mean fewer kernel launches.
CHUNK_BYTES = {'cpu': 4 << 20, 'default': 1 << 30}


def _chunks(bounds: Sequence[Tuple[int, int]], row_bytes: int, device: torch.device) -> list:
    """Consecutive offsets grouped into ``(start, end, [(k, s, e), ...])``
    passes of at most ``CHUNK_BYTES`` gathered bytes (an offset larger than
    that is one pass of its own)."""
    budget = CHUNK_BYTES.get(device.type, CHUNK_BYTES['default'])
    out, group = [], []
    for k, (s, e) in enumerate(bounds):
        if e == s:
            continue
        if group and (e - group[0][1]) * row_bytes > budget:
            out.append((group[0][1], group[-1][2], group))
            group = []
        group.append((k, s, e))
    if group:
        out.append((group[0][1], group[-1][2], group))
    return out


class _GatherGemmScatter(torch.autograd.Function):
    """``out[o] = Σ_k Σ_{(i, o) ∈ pairs_k} feats[i] @ W[k]`` (+ the identity
    offset's ``feats @ W[c]``), with its backward written out: per pass (a
    group of offsets, :data:`CHUNK_BYTES`) one gather, one matrix product per
    offset into a shared buffer and one ``index_add``. Only the input features
    and weights are kept for the backward (the gathers are recomputed), and
    neither pass synchronises with the host."""

    @staticmethod
    def forward(ctx, feats: Tensor, weight: Tensor, kmap: KernelMap) -> Tensor:
        dtype = feats.dtype
        if torch.is_autocast_enabled(feats.device.type):
            dtype = torch.get_autocast_dtype(feats.device.type)
        with torch.autocast(feats.device.type, enabled=False):
            feats_c, weight_c = feats.to(dtype), weight.to(dtype)
            if kmap.identity is not None:
                out = feats_c @ weight_c[kmap.identity]
            else:
                out = feats_c.new_zeros(kmap.n_out, weight.shape[2])
            row_bytes = (weight.shape[1] + weight.shape[2]) * feats_c.element_size()
            for start, end, group in _chunks(kmap.bounds, row_bytes, feats.device):
                gathered = feats_c.index_select(0, kmap.in_rows[start:end])
                prod = gathered.new_empty(end - start, weight.shape[2])
                for k, s, e in group:
                    torch.mm(
                        gathered[s - start:e - start], weight_c[k], out=prod[s - start:e - start])
                out.index_add_(0, kmap.out_rows[start:end], prod)
        ctx.save_for_backward(feats_c, weight_c)
        ctx.kmap = kmap
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        feats, weight = ctx.saved_tensors
        kmap: KernelMap = ctx.kmap
        grad_out = grad_out.to(feats.dtype)
        want_x, want_w = ctx.needs_input_grad[:2]
        grad_x = grad_w = None
        with torch.autocast(feats.device.type, enabled=False):
            if want_w:
                grad_w = torch.zeros_like(weight)
            if kmap.identity is not None:
                if want_x:
                    grad_x = grad_out @ weight[kmap.identity].T
                if want_w:
                    torch.mm(feats.T, grad_out, out=grad_w[kmap.identity])
            elif want_x:
                grad_x = torch.zeros_like(feats)
            row_bytes = 2 * (weight.shape[1] + weight.shape[2]) * feats.element_size()
            for start, end, group in _chunks(kmap.bounds, row_bytes, feats.device):
                grad_pairs = grad_out.index_select(0, kmap.out_rows[start:end])
                in_rows = kmap.in_rows[start:end]
                gathered = feats.index_select(0, in_rows) if want_w else None
                grad_in = grad_pairs.new_empty(end - start, feats.shape[1]) if want_x else None
                for k, s, e in group:
                    rows = slice(s - start, e - start)
                    if want_w:
                        torch.mm(gathered[rows].T, grad_pairs[rows], out=grad_w[k])
                    if want_x:
                        torch.mm(grad_pairs[rows], weight[k].T, out=grad_in[rows])
                if want_x:
                    grad_x.index_add_(0, in_rows, grad_in)
        return grad_x, grad_w, None


def sparse_conv(feats: Tensor, weight: Tensor, kmap: KernelMap) -> Tensor:
    """Apply ``weight (K, C_in, C_out)`` along ``kmap``: ``(V_in, C_in)`` →
    ``(kmap.n_out, C_out)``.

    Raises:
        ValueError: If the weight's offsets or input channels do not match.
    """
    if (weight.dim() != 3 or weight.shape[0] != len(kmap.bounds)
            or weight.shape[1] != feats.shape[1]):
        raise ValueError(f'weight {tuple(weight.shape)} does not fit {len(kmap.bounds)} offsets '
                         f'and {feats.shape[1]} input channels')
    return _GatherGemmScatter.apply(feats, weight, kmap)


class SubMConv3d(nn.Module):
    """Submanifold convolution: outputs at the input sites only.

    Args:
        in_channels, out_channels (int): Feature sizes.
        kernel (int): Odd kernel size (3; 1 is a per-voxel linear map).
        bias (bool): Add a bias.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel: int = 3,
                 bias: bool = False) -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f'submanifold kernels are odd, got {kernel}')
        self.kernel = kernel
        self.weight = nn.Parameter(torch.empty(kernel**3, in_channels, out_channels))
        bound = 1.0 / math.sqrt(in_channels * kernel**3)
        nn.init.uniform_(self.weight, -bound, bound)
        self.bias = None
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound))

    def forward(self, x: SparseVoxels) -> SparseVoxels:
        key = ('subm', self.kernel)
        if key not in x.cache:
            x.cache[key] = submanifold_map(x.coords, self.kernel)
        out = sparse_conv(x.feats, self.weight, x.cache[key])
        if self.bias is not None:
            out = out + self.bias
        return x.replace(out)


class _Kernel2(nn.Module):
    """A ``(8, C_in, C_out)`` kernel-2 weight, uniform ±1/√(8·C_in)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(8, in_channels, out_channels))
        bound = 1.0 / math.sqrt(in_channels * 8)
        nn.init.uniform_(self.weight, -bound, bound)


class DownConv3d(_Kernel2):
    """Kernel 2, stride 2 convolution onto the coarse sites."""

    def forward(self, x: SparseVoxels) -> Tuple[SparseVoxels, KernelMap]:
        """Returns the coarse voxels and the coarse → fine map that
        :class:`UpConv3d` needs to come back."""
        if 'stride2' not in x.cache:
            x.cache['stride2'] = stride2_maps(x.coords)
        parents, down, up = x.cache['stride2']
        return SparseVoxels(parents, sparse_conv(x.feats, self.weight, down)), up


class UpConv3d(_Kernel2):
    """Kernel 2, stride 2 transposed convolution back onto given fine sites."""

    def forward(self, x: SparseVoxels, fine: SparseVoxels, link: KernelMap) -> SparseVoxels:
        """``link``: the coarse → fine map returned by :class:`DownConv3d`."""
        if link.n_out != fine.coords.shape[0]:
            raise ValueError(f'the link maps onto {link.n_out} sites, the fine level has '
                             f'{fine.coords.shape[0]}')
        return fine.replace(sparse_conv(x.feats, self.weight, link))


class SparseBatchNorm(nn.BatchNorm1d):
    """Batch norm over the voxel rows.

    Raises:
        ValueError: In training with fewer than 2 voxels at this level.
    """

    def forward(self, x: SparseVoxels) -> SparseVoxels:  # type: ignore[override]
        if self.training and x.feats.shape[0] < 2:
            raise ValueError(f'{x.feats.shape[0]} voxel(s) reach a batch norm of '
                             f'{self.num_features} channels in training; it needs at least 2. '
                             f'The scan is too small or too sparse for the network\'s '
                             f'downsampling: use more points, smaller voxels or a larger batch')
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
            self.downsample = nn.ModuleList([
                SubMConv3d(in_channels, out_channels, 1),
                SparseBatchNorm(out_channels, momentum=momentum)
            ])

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

    def __init__(self,
                 in_channels: int = 1,
                 out_channels: int = 64,
                 layers: Sequence[int] = (2, 3, 4, 6, 2, 2, 2, 2),
                 planes: Sequence[int] = (32, 64, 128, 256, 256, 128, 96, 96),
                 init_dim: int = 32,
                 momentum: float = 0.05,
                 normalize: bool = True) -> None:
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
            blocks = [
                BasicBlock(p + skip if j == 0 else p, p, momentum) for j in range(layers[4 + i])
            ]
            self.dec.append(nn.Sequential(*blocks))
            c = p
        self.final = SubMConv3d(c, out_channels, 1, bias=True)

    def forward(self, coords: Tensor, feats: Tensor) -> Tensor:
        if coords.dim() != 2 or coords.shape[1] != 4 or coords.shape[0] != feats.shape[0]:
            raise ValueError(f'coords must be (V, 4) = (batch, x, y, z) with one row per '
                             f'feature row; got {tuple(coords.shape)} and {tuple(feats.shape)}')
        if coords.shape[0] == 0:
            raise ValueError('empty scan: no voxels to process')
        check_key_range(coords)
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
