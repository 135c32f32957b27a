"""The pure-PyTorch sparse convolutions equal dense convolutions at active sites."""
import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from plugins.slidr.models.sparse import (DownConv3d, SparseUNet, SparseVoxels, SubMConv3d, UpConv3d,
                                         sparse_conv, stride2_maps, submanifold_map)


def _sites(n=40, size=6, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    coords = torch.cat(
        [torch.randint(0, batch, (n, 1), generator=g),
         torch.randint(0, size, (n, 3), generator=g)], 1)
    return torch.unique(coords, dim=0)


def _dense(coords, feats, size, batch=2):
    grid = feats.new_zeros(batch, feats.shape[1], size, size, size)
    grid[coords[:, 0], :, coords[:, 1], coords[:, 2], coords[:, 3]] = feats
    return grid


def test_submanifold_conv_equals_dense_conv_at_active_sites_with_grads():
    torch.manual_seed(0)
    coords = _sites()
    feats = torch.randn(coords.shape[0], 3, dtype=torch.float64, requires_grad=True)
    conv = SubMConv3d(3, 5).double()
    out = conv(SparseVoxels(coords, feats)).feats
    w = conv.weight.view(3, 3, 3, 3, 5).permute(4, 3, 0, 1, 2)  # (out, in, kx, ky, kz)
    dense = F.conv3d(_dense(coords, feats, 6), w, padding=1)
    ref = dense[coords[:, 0], :, coords[:, 1], coords[:, 2], coords[:, 3]]
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, [feats, conv.weight], g)
    want = torch.autograd.grad(ref, [feats, conv.weight], g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_down_and_up_convs_equal_strided_dense_convs():
    torch.manual_seed(1)
    coords = _sites(n=60, size=8)
    feats = torch.randn(coords.shape[0], 2, dtype=torch.float64)
    down = DownConv3d(2, 4).double()
    coarse, link = down(SparseVoxels(coords, feats))
    w = down.weight.view(2, 2, 2, 2, 4).permute(4, 3, 0, 1, 2)
    dense = F.conv3d(_dense(coords, feats, 8), w, stride=2)
    c = coarse.coords
    torch.testing.assert_close(coarse.feats, dense[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]])
    up = UpConv3d(4, 3).double()
    fine = up(coarse, SparseVoxels(coords, feats), link)
    wt = up.weight.view(2, 2, 2, 4, 3).permute(3, 4, 0, 1, 2)  # (in, out, kx, ky, kz)
    dense_up = F.conv_transpose3d(_dense(c, coarse.feats, 4), wt, stride=2)
    torch.testing.assert_close(fine.feats, dense_up[coords[:, 0], :, coords[:, 1], coords[:, 2],
                                                    coords[:, 3]])


def test_unet_shapes_norm_batch_independence_and_backward():
    torch.manual_seed(2)
    net = SparseUNet(
        in_channels=1,
        out_channels=8,
        layers=(1, ) * 8,
        planes=(8, 8, 16, 16, 16, 8, 8, 8),
        init_dim=8)
    coords = _sites(n=300, size=20, batch=2, seed=3)
    feats = torch.rand(coords.shape[0], 1)
    out = net(coords, feats)
    assert out.shape == (coords.shape[0], 8)
    norms = out.norm(dim=1)
    assert ((norms - 1).abs() < 1e-5).float().mean() > 0.9  # unit rows (all-zero rows stay 0)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert net.stem.weight.grad is not None and net.final.weight.grad.abs().sum() > 0
    net.eval()  # batch statistics aside, scenes never mix
    with torch.no_grad():
        both = net(coords, feats)
        first = coords[:, 0] == 0
        alone = net(coords[first], feats[first])
    torch.testing.assert_close(both[first], alone)
    with pytest.raises(ValueError, match='empty scan'):
        net(torch.zeros(0, 4, dtype=torch.long), torch.zeros(0, 1))
    with pytest.raises(ValueError, match=r'coords must be \(V, 4\)'):
        net(torch.zeros(3, 3, dtype=torch.long), torch.zeros(3, 1))


def test_submanifold_map_hand_case():
    # three voxels on a line: x = 0, 1, 3 (x = 3 has no neighbour)
    coords = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [0, 3, 0, 0]])
    kmap = submanifold_map(coords, 3)
    assert kmap.identity == 13 and kmap.n_out == 3 and len(kmap.bounds) == 27
    counts = [e - s for s, e in kmap.bounds]
    plus_x, minus_x = 22, 4  # (dx, dy, dz) = (1, 0, 0) and (-1, 0, 0), lexicographic
    assert counts[plus_x] == counts[minus_x] == 1 and sum(counts) == 2
    s, _ = kmap.bounds[plus_x]
    assert (kmap.in_rows[s].item(), kmap.out_rows[s].item()) == (1, 0
                                                                 )  # coords[in] = coords[out] + o
    s, _ = kmap.bounds[minus_x]
    assert (kmap.in_rows[s].item(), kmap.out_rows[s].item()) == (0, 1)
    lone = submanifold_map(coords[2:], 3)  # one voxel: the centre alone
    assert lone.in_rows.numel() == 0 and lone.identity == 13


def test_stride2_maps_hand_case():
    coords = torch.tensor([[0, 0, 0, 0], [0, 1, 1, 0], [0, 2, 0, 1], [1, 0, 0, 0]])
    parents, down, up = stride2_maps(coords)
    assert parents.tolist() == [[0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]]
    pairs = {}
    for k, (s, e) in enumerate(down.bounds):
        for i, o in zip(down.in_rows[s:e].tolist(), down.out_rows[s:e].tolist()):
            pairs[i] = (o, k)
    # fine row -> (parent row, offset 4·(x mod 2) + 2·(y mod 2) + z mod 2)
    assert pairs == {0: (0, 0), 1: (0, 6), 2: (1, 1), 3: (2, 0)}
    assert down.n_out == 3 and up.n_out == 4
    assert torch.equal(up.in_rows, down.out_rows) and torch.equal(up.out_rows, down.in_rows)


@pytest.mark.parametrize('kind', ['subm3', 'subm1', 'down', 'up'])
def test_sparse_conv_gradcheck(kind):
    coords = _sites(n=50, size=5, seed=4)
    parents, down, up = stride2_maps(coords)
    kmap = {
        'subm3': submanifold_map(coords, 3),
        'subm1': submanifold_map(coords, 1),
        'down': down,
        'up': up
    }[kind]
    rows = parents.shape[0] if kind == 'up' else coords.shape[0]
    g = torch.Generator().manual_seed(5)
    feats = torch.randn(rows, 3, dtype=torch.float64, generator=g, requires_grad=True)
    weight = torch.randn(
        len(kmap.bounds), 3, 2, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f, w: sparse_conv(f, w, kmap), (feats, weight))
    out = sparse_conv(feats, weight, kmap)
    assert out.shape == (kmap.n_out, 2)
    # only one input needing a gradient: the other is not formed
    out = sparse_conv(feats.detach(), weight, kmap)
    (gw, ) = torch.autograd.grad(out.sum(), [weight])
    assert torch.isfinite(gw).all()


def test_sparse_conv_loop_equivalence_and_bad_inputs():
    coords = _sites(n=80, size=6, seed=6)
    kmap = submanifold_map(coords, 3)
    feats = torch.randn(coords.shape[0], 4, dtype=torch.float64)
    weight = torch.randn(27, 4, 3, dtype=torch.float64)
    want = feats @ weight[13]
    for k, (s, e) in enumerate(kmap.bounds):
        for i, o in zip(kmap.in_rows[s:e].tolist(), kmap.out_rows[s:e].tolist()):
            want[o] += feats[i] @ weight[k]
    torch.testing.assert_close(sparse_conv(feats, weight, kmap), want)
    with pytest.raises(ValueError, match='does not fit 27 offsets and 4 input channels'):
        sparse_conv(feats, weight[:8], kmap)
    with pytest.raises(ValueError, match='does not fit'):
        sparse_conv(feats[:, :3], weight, kmap)
    parents, _, up = stride2_maps(coords)
    with pytest.raises(ValueError, match='the link maps onto'):
        UpConv3d(4, 3)(SparseVoxels(parents, torch.zeros(len(parents), 4)),
                       SparseVoxels(coords[:-1], torch.zeros(len(coords) - 1, 4)), up)


def test_sparse_conv_under_autocast_runs_in_bfloat16():
    coords = _sites(n=80, size=6, seed=7)
    conv = SubMConv3d(8, 8)
    feats = torch.randn(coords.shape[0], 8, requires_grad=True)
    ref = conv(SparseVoxels(coords, feats)).feats
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = conv(SparseVoxels(coords, feats)).feats
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=0.05, rtol=0.05)
    out.float().sum().backward()
    assert conv.weight.grad.dtype == torch.float32 and feats.grad.dtype == torch.float32


class _HostSyncs:
    """Counts what makes a GPU wait for the host: ops whose output size depends
    on the data, and values read back to Python."""

    SIZED = {
        'nonzero', 'unique_dim', '_unique2', 'unique_consecutive', 'masked_select', 'bincount',
        'repeat_interleave'
    }
    READ = {'tolist', 'item', '__bool__', '__int__', '__float__', '__index__'}

    def __init__(self):
        self.count = 0
        counter = self

        class Ops(TorchDispatchMode):

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                name = func.overloadpacket.__name__
                bool_index = name == 'index' and any(t is not None and t.dtype == torch.bool
                                                     for t in args[1])
                counter.count += name in _HostSyncs.SIZED or bool_index
                return func(*args, **(kwargs or {}))

        class Reads(TorchFunctionMode):

            def __torch_function__(self, func, types, args=(), kwargs=None):
                counter.count += getattr(func, '__name__', '') in _HostSyncs.READ
                return func(*args, **(kwargs or {}))

        self.modes = [Reads(), Ops()]

    def __enter__(self):
        for m in self.modes:
            m.__enter__()
        return self

    def __exit__(self, *exc):
        for m in reversed(self.modes):
            m.__exit__(*exc)


def test_host_synchronisations_do_not_grow_with_depth():
    """Kernel maps are built once per resolution level, and the convolutions'
    forward and backward never wait on the host: the count of synchronising
    ops is the same for 1 and 3 blocks per stage, and the backward has none."""
    coords = _sites(n=400, size=16, seed=8)
    feats = torch.rand(coords.shape[0], 1)
    counts = []
    for depth in (1, 3):
        torch.manual_seed(0)
        net = SparseUNet(1, 4, layers=(depth, ) * 8, planes=(4, ) * 8, init_dim=4)
        with _HostSyncs() as forward:
            out = net(coords, feats)
        with _HostSyncs() as backward:
            out.sum().backward()
        counts.append(forward.count)
        assert backward.count == 0
    assert counts[0] == counts[1]
    # five levels' submanifold maps (hit rows, counts per offset) and four
    # stride-2 maps (unique parents, counts per offset): two each; one read
    # of the input's coordinate ranges
    assert counts[0] <= 2 * 9 + 1, counts


def test_passes_over_offset_groups_equal_one_pass(monkeypatch):
    from plugins.slidr.models import sparse
    coords = _sites(n=300, size=8, seed=9)
    kmap = submanifold_map(coords, 3)
    g = torch.Generator().manual_seed(10)
    feats = torch.randn(coords.shape[0], 4, dtype=torch.float64, generator=g, requires_grad=True)
    weight = torch.randn(27, 4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    upstream = torch.randn(coords.shape[0], 3, dtype=torch.float64, generator=g)
    results = []
    fifth = kmap.in_rows.numel() // 5 * 7 * 8
    for budget in (1 << 30, 1, fifth):  # one pass; an offset a pass; a few offsets a pass
        monkeypatch.setitem(sparse.CHUNK_BYTES, 'cpu', budget)
        passes = sparse._chunks(kmap.bounds, 7 * 8, torch.device('cpu'))
        assert sum(e - s for s, e, _ in passes) == kmap.in_rows.numel()
        out = sparse_conv(feats, weight, kmap)
        results.append((len(passes), out, *torch.autograd.grad(out, [feats, weight], upstream)))
    assert results[0][0] == 1 and results[1][0] == 26 and 1 < results[2][0] < 26
    for _, *tensors in results[1:]:
        for a, b in zip(results[0][1:], tensors):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_translation_invariance_and_key_range():
    """Negative coordinates (cylindrical angles, heights) pack like positive
    ones: shifting every site leaves the output unchanged; ranges that cannot
    pack into int64 keys are refused."""
    torch.manual_seed(11)
    net = SparseUNet(1, 4, layers=(1, ) * 8, planes=(4, ) * 8, init_dim=4).eval()
    coords = _sites(n=300, size=16, seed=12)
    feats = torch.rand(coords.shape[0], 1)
    shift = torch.tensor([0, -1008, 48, -16])  # multiples of 16 keep all four stride-2 grids
    with torch.no_grad():
        torch.testing.assert_close(net(coords + shift, feats), net(coords, feats))
    far = coords.clone()
    far[0, 1:] = 2**21
    with pytest.raises(ValueError, match='too many to pack into int64 keys'):
        net(far, feats)
