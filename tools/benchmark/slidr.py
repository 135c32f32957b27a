"""SLidR speed: superpixels (fast vs scikit-image SLIC) and pooling + loss
(scatter/segment reductions vs one-hot matrix products), in one run.

    python tools/benchmark/slidr.py
    python tools/benchmark/slidr.py --images 2 --repeats 3

Superpixels: 1600×900 synthetic blob images (SLIC needs structure), seconds per
image of ``slic_reference`` (scikit-image at full resolution, the reference),
the compiled SLIC at full resolution (labels checked identical) and
``slic_fast``, their ratios, label counts and boundary agreement (±2 px).
Pooling + loss: 6 cameras of 224×416, D = 64, S = 150, ~35k 3D rows and
~1.2k pairings per image, forward + backward. The baseline builds one-hot
matrices (pairings as a dense matrix, pixels as a sparse COO matrix — a dense
one would hold 900 × 559k floats, 2 GB) as the reference does.
3D backbone: forward + backward of the sparse U-Net on lidar-like voxel sets
of growing size (``--voxels``), and the time ratios to the smallest: the cost
follows the active voxels, not the grid's volume.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def superpixel_rows(images: int) -> list:
    """Per image: reference time, fast time, label counts, recall, precision,
    compiled full-resolution time and whether its labels equal the reference."""
    from plugins.slidr.superpixels import (blob_image, boundary_agreement, slic_fast,
                                           slic_reference)
    rows = []
    for i in range(images):
        img = blob_image(900, 1600, blobs=40, seed=i)
        t0 = time.perf_counter()
        ref = slic_reference(img)
        t_ref = time.perf_counter() - t0
        t0 = time.perf_counter()
        fast = slic_fast(img)
        t_fast = time.perf_counter() - t0
        t0 = time.perf_counter()
        same = slic_fast(img, factor=1, preprocess='skimage')
        t_same = time.perf_counter() - t0
        recall, precision = boundary_agreement(ref, fast)
        rows.append((t_ref, t_fast, len(np.unique(ref)), len(np.unique(fast)), recall, precision,
                     t_same, bool(np.array_equal(same, ref))))
    return rows


def pooling_case(device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n, d, h, w, s = 6, 64, 224, 416, 150
    sp = torch.randint(0, 120, (n, h // 8, w // 8), generator=g)
    sp = sp.repeat_interleave(8, 1).repeat_interleave(8, 2)  # blocky superpixels
    feats3d = F.normalize(torch.randn(35000, d, generator=g), dim=1)
    pix = F.normalize(torch.randn(n, d, h, w, generator=g), dim=1)
    p = 1200 * n
    pairs = (torch.randint(0, 35000, (p,), generator=g), torch.randint(0, n, (p,), generator=g),
             torch.randint(0, h, (p,), generator=g), torch.randint(0, w, (p,), generator=g))
    return [t.to(device) for t in (sp, feats3d, pix, *pairs)], s


def scatter_step(sp, f3, pix, rows, img, r, c, s):
    from plugins.slidr.functional import pool_pixels, pool_points, superpixel_nce, superpixel_slots
    slots, num = superpixel_slots(sp, s)
    k, _ = pool_points(f3, rows, slots[img, r, c], num)
    q, _ = pool_pixels(pix, slots, num)
    return superpixel_nce(k, q)[0]


def onehot_step(sp, f3, pix, rows, img, r, c, s):
    n, d, h, w = pix.shape
    slots = sp + (torch.arange(n, device=sp.device) * s)[:, None, None]
    num = n * s
    pair_slots = slots[img, r, c]
    one_p = torch.zeros(num, rows.numel(), device=f3.device)
    one_p[pair_slots, torch.arange(rows.numel(), device=f3.device)] = 1.0
    k = one_p @ f3[rows] / (one_p.sum(1, keepdim=True) + 1e-6)
    flat = pix.permute(0, 2, 3, 1).reshape(-1, d)
    idx = torch.stack([slots.reshape(-1), torch.arange(flat.shape[0], device=f3.device)])
    one_q = torch.sparse_coo_tensor(idx, torch.ones(flat.shape[0], device=f3.device),
                                    (num, flat.shape[0]), check_invariants=False)
    q = torch.sparse.mm(one_q, flat) / (torch.sparse.sum(one_q, 1).to_dense()[:, None] + 1e-6)
    kept = torch.nonzero(k[:, 0] != 0)[:, 0]
    logits = k[kept] @ q[kept].t() / 0.07
    return F.cross_entropy(logits, torch.arange(kept.numel(), device=f3.device))


def time_pooling(device: str, repeats: int) -> dict:
    tensors, s = pooling_case(device)
    sp, f3, pix, rows, img, r, c = tensors
    out = {}
    for name, fn in (('one-hot matrices', onehot_step), ('scatter (plugin)', scatter_step)):
        times, value = [], None
        for i in range(repeats + 1):
            a = f3.clone().requires_grad_()
            b = pix.clone().requires_grad_()
            t0 = time.perf_counter()
            loss = fn(sp, a, b, rows, img, r, c, s)
            loss.backward()
            if device.startswith('cuda'):
                torch.cuda.synchronize()
            if i:
                times.append(time.perf_counter() - t0)
            value = float(loss.detach())
        out[name] = (statistics.median(times), value)
    return out


def lidar_like_voxels(count: int, seed: int = 0) -> torch.Tensor:
    """``(V, 4)`` unique voxels on rings around the origin (a spinning lidar's
    ground and walls at 0.1 m cylinder cells), about ``count`` rows."""
    g = torch.Generator().manual_seed(seed)
    angle = torch.rand(count * 2, generator=g) * 2 * math.pi
    radius = 3 + 47 * torch.rand(count * 2, generator=g) ** 2
    height = torch.randint(0, 20, (count * 2,), generator=g)
    xyz = torch.stack([(radius * angle.cos() / 0.1).long(), (radius * angle.sin() / 0.1).long(),
                       height], 1)
    xyz = torch.unique(xyz, dim=0)[:count]
    return torch.cat([torch.zeros(len(xyz), 1, dtype=torch.long), xyz], 1)


def time_backbone(device: str, counts, repeats: int = 2) -> dict:
    """Seconds per forward + backward of the SR-UNet34C student per voxel count."""
    from plugins.slidr.sparse import SparseUNet
    torch.manual_seed(0)
    net = SparseUNet(1, 64).to(device).train()
    out = {}
    for count in counts:
        coords = lidar_like_voxels(count).to(device)
        feats = torch.ones(len(coords), 1, device=device)
        times = []
        for i in range(repeats + 1):
            net.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            net(coords, feats).square().sum().backward()
            if device.startswith('cuda'):
                torch.cuda.synchronize()
            if i:
                times.append(time.perf_counter() - t0)
        out[len(coords)] = statistics.median(times)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--images', type=int, default=3)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--voxels', type=int, nargs='*', default=[2500, 5000, 10000],
                        help='voxel counts for the 3D backbone timing (none: skip it)')
    args = parser.parse_args(argv)
    from plugins.slidr.slic import numba_available, warm_up
    if numba_available():
        print(f'numba SLIC kernels ready in {warm_up():.2f} s (compiled or loaded from cache; '
              'not counted below)')
    rows = superpixel_rows(args.images)
    t_ref = statistics.median(r[0] for r in rows)
    t_fast = statistics.median(r[1] for r in rows)
    t_same = statistics.median(r[6] for r in rows)
    print(f'superpixels, 1600x900, {args.images} images (median s/image)')
    print(f'  scikit-image SLIC (reference)  {t_ref:6.2f} s   labels '
          f'{min(r[2] for r in rows)}-{max(r[2] for r in rows)}')
    print(f'  compiled SLIC, full resolution {t_same:6.2f} s   labels identical to the '
          f'reference: {all(r[7] for r in rows)}   speed-up {t_ref / t_same:.1f}x')
    print(f'  slic_fast (2x down-scaled)     {t_fast:6.2f} s   labels '
          f'{min(r[3] for r in rows)}-{max(r[3] for r in rows)}   speed-up {t_ref / t_fast:.1f}x')
    print(f'  boundary agreement (+-2 px): recall {statistics.mean(r[4] for r in rows):.3f}, '
          f'precision {statistics.mean(r[5] for r in rows):.3f}')
    pooled = time_pooling(args.device, args.repeats)
    base = pooled['one-hot matrices'][0]
    print(f'pooling + loss, fwd+bwd, device={args.device}, 6x224x416 images, 35k 3D rows, '
          f'7.2k pairings (median of {args.repeats})')
    for name, (t, value) in pooled.items():
        print(f'  {name:18s} {t * 1000:8.1f} ms   ratio {t / base:.3f}   loss {value:.6f}')
    backbone = time_backbone(args.device, args.voxels) if args.voxels else {}
    if backbone:
        first = min(backbone)
        print(f'3D backbone (SR-UNet34C, 37.8 M parameters), forward + backward, '
              f'device={args.device}')
        for count, t in backbone.items():
            print(f'  {count:7d} voxels {t:8.2f} s   time ratio {t / backbone[first]:5.2f} for '
                  f'{count / first:4.1f}x the voxels')
    return dict(superpixels=rows, pooling=pooled, backbone=backbone)


if __name__ == '__main__':
    main()
