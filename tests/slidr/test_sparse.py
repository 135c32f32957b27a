"""The pure-PyTorch sparse convolutions equal dense convolutions at active sites."""
import pytest
import torch
import torch.nn.functional as F

from plugins.slidr.sparse import DownConv3d, SparseUNet, SparseVoxels, SubMConv3d, UpConv3d


def _sites(n=40, size=6, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    coords = torch.cat([torch.randint(0, batch, (n, 1), generator=g),
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
    torch.testing.assert_close(fine.feats,
                               dense_up[coords[:, 0], :, coords[:, 1], coords[:, 2], coords[:, 3]])


def test_unet_shapes_norm_batch_independence_and_backward():
    torch.manual_seed(2)
    net = SparseUNet(in_channels=1, out_channels=8, layers=(1,) * 8,
                     planes=(8, 8, 16, 16, 16, 8, 8, 8), init_dim=8)
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
