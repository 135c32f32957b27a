"""SLidR speed: superpixels (fast vs scikit-image SLIC), pixel/point pooling +
superpixel NCE (native layout vs channels-last), and the sparse 3D backbone.

    python tools/benchmark/slidr.py
    python tools/benchmark/slidr.py --parts pooling --pool-scenes 1 4 8 --repeats 7
    python tools/benchmark/slidr.py --device cuda --parts pooling backbone

Superpixels: scikit-image sample photographs resized to 1600×900; seconds per
image of ``slic_reference`` (scikit-image at full resolution), the compiled
SLIC at full resolution (labels checked identical), and ``slic_fast`` as
shipped (serial) against its row-parallel option, interleaved; label counts
and boundary agreement (±2 px) of the fast labels with the reference.
Pooling + loss: nuScenes-sized scenes (6 cameras of 224×416, D = 64, 150
superpixels per image, ~34k 3D rows and ~25k pairings per scene), forward +
backward, against a straightforward channels-last pooling computed in this
script (losses and gradients checked equal first), A/B interleaved with the
order swapped each round; ratios are medians of per-round ratios with their range.
A third arm times the floor that no implementation avoids: the loss on the
pooled features (forward + backward) and one fresh buffer of the pixel
features' size written (on a CPU, mostly first-touch page faults).
3D backbone: one submanifold convolution, the plugin's fused gather–GEMM–scatter
against a per-offset autograd loop; then forward + backward of the sparse U-Net
on batches of 1, 2, … ray-cast scans (``--scans``), and the time ratios to
the smallest: the cost follows the active voxels, not the grid's volume. On a
GPU (``--device cuda``, optionally ``--autocast``) it also prints peak memory.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # abtiming

import numpy as np
import torch
import torch.nn.functional as F
from abtiming import format_ratio, interleaved, medians, round_ratios, sync

PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket', 'hubble_deep_field', 'retina',
          'immunohistochemistry')


def photo(index: int) -> np.ndarray:
    """A scikit-image sample photograph resized (bicubic) to 1600×900, uint8 RGB."""
    import cv2
    import skimage.data
    img = getattr(skimage.data, PHOTOS[index % len(PHOTOS)])()
    return cv2.resize(
        np.ascontiguousarray(img[..., :3]), (1600, 900), interpolation=cv2.INTER_CUBIC)


def superpixel_rows(images: int, rounds: int = 3) -> list:
    """Per photo: scikit-image's time, ``slic_fast`` serial (the default) and
    row-parallel (interleaved, ``rounds`` each, medians), label counts,
    boundary agreement of the fast labels with the reference, and the
    full-resolution compiled SLIC's time and label identity."""
    from plugins.slidr.datasets.superpixels import boundary_agreement, slic_fast, slic_reference
    rows = []
    for i in range(images):
        img = photo(i)
        t0 = time.perf_counter()
        ref = slic_reference(img)
        t_ref = time.perf_counter() - t0
        times = medians(
            interleaved(
                {
                    'serial': lambda: slic_fast(img),
                    'parallel': lambda: slic_fast(img, parallel=True)
                }, rounds, 1))
        fast = slic_fast(img)
        t0 = time.perf_counter()
        same = slic_fast(img, factor=1, preprocess='skimage')
        t_same = time.perf_counter() - t0
        recall, precision = boundary_agreement(ref, fast)
        rows.append(
            dict(
                name=PHOTOS[i % len(PHOTOS)],
                reference=t_ref,
                serial=times['serial'],
                parallel=times['parallel'],
                full=t_same,
                identical=bool(np.array_equal(same, ref)),
                labels=(len(np.unique(ref)), len(np.unique(fast))),
                recall=recall,
                precision=precision))
    return rows


def pooling_case(scenes: int, device: str, seed: int = 0):
    """nuScenes-sized scenes: 6 cameras of 224×416, D = 64, 150 superpixels per
    image, ~34k 3D rows and ~25k pairings per scene."""
    g = torch.Generator().manual_seed(seed)
    n, d, h, w, s = 6 * scenes, 64, 224, 416, 150
    sp = torch.randint(0, s, (n, h // 8, w // 8), generator=g)
    sp = sp.repeat_interleave(8, 1).repeat_interleave(8, 2)  # blocky superpixels
    rows3d, p = 34000 * scenes, 25000 * scenes
    feats3d = F.normalize(torch.randn(rows3d, d, generator=g), dim=1)
    pix = F.normalize(torch.randn(n, d, h, w, generator=g), dim=1)
    pairs = (torch.randint(0, rows3d, (p, ), generator=g), torch.randint(0, n, (p, ), generator=g),
             torch.randint(0, h, (p, ), generator=g), torch.randint(0, w, (p, ), generator=g))
    return [t.to(device) for t in (sp, feats3d, pix, *pairs)], s


def plugin_pooled(sp, f3, pix, rows, img, r, c, s):
    """The plugin's pooling (native layout): ``(k, q)``, 3D and pixel side."""
    from plugins.slidr.functional import pool_pixels, pool_points, superpixel_slots
    slots, num = superpixel_slots(sp, s)
    return pool_points(f3, rows, slots[img, r, c], num)[0], pool_pixels(pix, slots, num)[0]


def plugin_step(sp, f3, pix, rows, img, r, c, s):
    """The plugin's pooling (native layout) and superpixel NCE."""
    from plugins.slidr.functional import superpixel_nce
    return superpixel_nce(*plugin_pooled(sp, f3, pix, rows, img, r, c, s))[0]


def channels_last_step(sp, f3, pix, rows, img, r, c, s):
    """Straightforward: pixels to channels-last rows, one index_add per side."""
    from plugins.slidr.functional import superpixel_nce
    n, d = pix.shape[:2]
    slots = sp + (torch.arange(n, device=sp.device) * s)[:, None, None]
    num = n * s
    pair_slots = slots[img, r, c]
    k = f3.new_zeros(num, d).index_add(0, pair_slots, f3[rows])
    k = k / (torch.bincount(pair_slots, minlength=num)[:, None] + 1e-6)
    flat = pix.permute(0, 2, 3, 1).reshape(-1, d)
    q = flat.new_zeros(num, d).index_add(0, slots.reshape(-1), flat)
    q = q / (torch.bincount(slots.reshape(-1), minlength=num)[:, None] + 1e-6)
    return superpixel_nce(k, q)[0]


def original_step(sp, f3, pix, rows, img, r, c, s, temperature: float = 0.07):
    """SLidR's published formulation: sparse one-hot matrices in coordinate format, slots ×
    pairings and slots × pixels, multiplied with the paired 3D rows and with
    the pixel features as channels-last rows; slots kept where the pooled 3D
    feature's first channel is non-zero; cross-entropy of ``k·qᵀ/τ``."""
    n, d = pix.shape[:2]
    slots = sp + (torch.arange(n, device=sp.device) * s)[:, None, None]
    num = n * s

    def one_hot(slot_of: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        cols = torch.arange(slot_of.numel(), device=sp.device)
        return torch.sparse_coo_tensor(
            torch.stack((slot_of, cols)),
            torch.ones(slot_of.numel(), device=sp.device, dtype=dtype), (num, slot_of.numel()),
            check_invariants=False)

    with torch.no_grad():
        to_pairings = one_hot(slots[img, r, c], f3.dtype)
        to_pixels = one_hot(slots.reshape(-1), pix.dtype)
    k = to_pairings @ f3[rows]
    k = k / (torch.sparse.sum(to_pairings, 1).to_dense()[:, None] + 1e-6)
    q = to_pixels @ pix.permute(0, 2, 3, 1).reshape(-1, d)
    q = q / (torch.sparse.sum(to_pixels, 1).to_dense()[:, None] + 1e-6)
    kept = torch.nonzero(k[:, 0] != 0)[:, 0]
    k, q = k[kept], q[kept]
    return F.cross_entropy(k @ q.t() / temperature, torch.arange(len(kept), device=k.device))


#: the timed implementations; ratios are taken against the first two
POOLING_ARMS = {
    'original': original_step,
    'channels-last': channels_last_step,
    'plugin': plugin_step
}


def time_pooling(scenes: int, device: str, rounds: int) -> dict:
    """Check all arms give the same loss and gradients, then time them
    interleaved (with the floor)."""
    tensors, s = pooling_case(scenes, device)
    sp, f3, pix, rows, img, r, c = tensors
    fns = POOLING_ARMS
    leaves = {k: (f3.clone().requires_grad_(), pix.clone().requires_grad_()) for k in fns}
    values = {}
    for k, fn in fns.items():
        loss = fn(sp, *leaves[k], rows, img, r, c, s)
        values[k] = (loss.detach(), *torch.autograd.grad(loss, leaves[k]))
    for k in ('original', 'channels-last'):
        for a, b in zip(values['plugin'], values[k]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)

    def step(k):  # gradients returned, not accumulated into .grad (as for non-leaf features)
        return lambda: torch.autograd.grad(fns[k](sp, *leaves[k], rows, img, r, c, s), leaves[k])

    from plugins.slidr.functional import superpixel_nce
    with torch.no_grad():
        pooled = plugin_pooled(sp, f3, pix, rows, img, r, c, s)
    pooled = tuple(t.requires_grad_() for t in pooled)

    def floor():  # what every implementation does: the loss on the pooled features, fwd+bwd,
        # and one fresh pixel gradient written
        torch.autograd.grad(superpixel_nce(*pooled)[0], pooled)
        return torch.empty_like(pix).fill_(1.0)

    candidates = {k: step(k) for k in fns}
    candidates['floor'] = floor
    times = interleaved(candidates, rounds, 1, device)
    to_original, to_channels_last = (round_ratios(times, k) for k in ('original', 'channels-last'))
    return dict(
        scenes=scenes,
        ms={
            k: v * 1e3
            for k, v in medians(times).items()
        },
        ratio=to_channels_last['plugin'],
        floor=to_channels_last['floor'],
        ratio_original=to_original['plugin'],
        floor_original=to_original['floor'],
        loss=float(values['plugin'][0]),
        pairings=rows.numel())


def nce_case(slots: int, device: str, seed: int = 0):
    """Pooled 3D and 2D features of ``slots`` superpixels (D = 64, unit rows)."""
    g = torch.Generator().manual_seed(seed)
    return [F.normalize(torch.randn(slots, 64, generator=g), dim=1).to(device) for _ in range(2)]


def materialised_nce(k: torch.Tensor, q: torch.Tensor, temperature: float = 0.07):
    """Straightforward: the whole ``(S, S)`` logits, one cross-entropy."""
    return F.cross_entropy(k @ q.t() / temperature, torch.arange(len(k), device=k.device))


def blockwise_nce(k: torch.Tensor, q: torch.Tensor, temperature: float = 0.07):
    """The plugin's in-batch InfoNCE (row blocks)."""
    from plugins.core.functional import info_nce
    return info_nce(k, q, temperature=temperature, reduction='mean')


NCE_ARMS = {'materialised': materialised_nce, 'blockwise': blockwise_nce}


def nce_step(arm: str, k: torch.Tensor, q: torch.Tensor):
    return torch.autograd.grad(NCE_ARMS[arm](k, q), (k, q))


def peak_resident_kib() -> int:
    """This process's peak resident set (Linux ``VmHWM``, KiB). Unlike
    ``ru_maxrss``, which a child inherits from its parent across ``exec``, it
    starts afresh in a new process."""
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith('VmHWM:'))


def nce_peak_mib(arm: str, slots: int, device: str) -> float:
    """Peak memory of one loss forward + backward above its inputs: on CUDA
    the allocator's peak; on a CPU (Linux) the growth of a fresh process's
    peak resident set."""
    if device.startswith('cuda'):
        k, q = (t.requires_grad_() for t in nce_case(slots, device))
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        nce_step(arm, k, q)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    import subprocess
    code = (
        'import sys, torch; sys.path[:0] = sys.argv[1:3]; import slidr; '
        'slidr.nce_step(sys.argv[3], *(t.requires_grad_() for t in slidr.nce_case(64, "cpu"))); '
        'k, q = (t.requires_grad_() for t in slidr.nce_case(int(sys.argv[4]), "cpu")); '
        'before = slidr.peak_resident_kib(); slidr.nce_step(sys.argv[3], k, q); '
        'print(slidr.peak_resident_kib() - before)')
    # a small step first loads the kernels, so the growth is the step's own buffers
    out = subprocess.run([
        sys.executable, '-c', code, ROOT,
        os.path.dirname(os.path.abspath(__file__)), arm,
        str(slots)
    ],
                         capture_output=True,
                         text=True,
                         check=True,
                         env=dict(os.environ, OMP_NUM_THREADS='1'))
    return float(out.stdout.split()[-1]) / 1024


def report_nce(device: str, rounds: int, slot_counts=(900, 3600, 7200)) -> list:
    """The superpixel NCE alone: materialised logits against the plugin's row blocks."""
    print(
        f'superpixel NCE alone, fwd+bwd, D = 64, device={device}; {rounds} interleaved rounds; '
        f'values and gradients checked equal; peak memory: '
        f'{"allocator peak" if device.startswith("cuda") else "peak resident set of a fresh process"}'
    )
    print(f'{"slots":>6s} {"materialised (ms)":>18s} {"blockwise (ms)":>15s}  '
          f'{"blockwise / materialised":26s} peak MiB materialised / blockwise')
    rows = []
    for slots in slot_counts:
        k, q = (t.requires_grad_() for t in nce_case(slots, device))
        want, got = (NCE_ARMS[a](k, q) for a in ('materialised', 'blockwise'))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        for a, b in zip(torch.autograd.grad(got, (k, q)), torch.autograd.grad(want, (k, q))):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-8)
        times = interleaved({a: (lambda a=a: nce_step(a, k, q))
                             for a in NCE_ARMS}, rounds, 1, device)
        ratio = round_ratios(times, 'materialised')['blockwise']
        ms = medians(times)
        peaks = {a: nce_peak_mib(a, slots, device) for a in NCE_ARMS}
        print(f'{slots:6d} {ms["materialised"] * 1e3:18.1f} {ms["blockwise"] * 1e3:15.1f}  '
              f'{format_ratio(ratio):26s} {peaks["materialised"]:.0f} / {peaks["blockwise"]:.0f}')
        rows.append(dict(slots=slots, ms=ms, ratio=ratio, peak_mib=peaks))
    return rows


def lidar_scan_voxels(scans: int, steps: int = 1084, seed: int = 0) -> torch.Tensor:
    """``(V, 4)`` voxels of ``scans`` ray-cast 32-beam scans (``steps``
    azimuths each, nuScenes-like) of road scenes, on SLidR's cylindrical
    0.1 m / 1° grid, batch index first: ~16.5k voxels a scan, ~5 neighbours
    each, as real sweeps have."""
    from plugins.slidr.geometry import cylindrical_voxelize
    from plugins.testing.nuscenes import ray_cast_scan, road_scene
    rng = np.random.default_rng(seed)
    rows = []
    for b in range(scans):
        cloud, _ = ray_cast_scan(
            np.array([rng.uniform(0, 80), 0.2]), road_scene(rng), rng, steps=steps)
        coords = cylindrical_voxelize(torch.from_numpy(cloud[:, :3]))[0]
        rows.append(torch.cat([torch.full((len(coords), 1), b, dtype=torch.long), coords], 1))
    return torch.cat(rows)


def looped_subm_conv(feats: torch.Tensor, weight: torch.Tensor, kmap) -> torch.Tensor:
    """Baseline: the same convolution as autograd sees it written plainly, one
    gather, product and out-of-place ``index_add`` per kernel offset."""
    out = feats @ weight[kmap.identity]
    for k, (s, e) in enumerate(kmap.bounds):
        if e > s:
            rows_in, rows_out = kmap.in_rows[s:e], kmap.out_rows[s:e]
            out = out.index_add(0, rows_out, feats[rows_in] @ weight[k])
    return out


def time_conv_layer(coords: torch.Tensor, channels: int, repeats: int) -> dict:
    """Seconds per forward + backward of one 3×3×3 submanifold conv on the
    voxels ``coords``, the plugin's fused gather–GEMM–scatter vs the per-offset
    loop, and their largest output difference."""
    from plugins.slidr.models.sparse import sparse_conv, submanifold_map
    device = str(coords.device)
    kmap = submanifold_map(coords, 3)
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(len(coords), channels, generator=g).to(device)
    weight = (torch.randn(27, channels, channels, generator=g) / channels).to(device)
    out, outputs = {}, {}
    for name, fn in (('per-offset loop', looped_subm_conv), ('fused (plugin)', sparse_conv)):
        times = []
        for i in range(repeats + 1):
            f, w = feats.clone().requires_grad_(), weight.clone().requires_grad_()
            sync(device)
            t0 = time.perf_counter()
            y = fn(f, w, kmap)
            y.backward(torch.ones_like(y))
            sync(device)
            if i:
                times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
        outputs[name] = y.detach()
    diff = float((outputs['fused (plugin)'] - outputs['per-offset loop']).abs().max())
    return dict(times=out, voxels=len(coords), pairs=kmap.in_rows.numel(), diff=diff)


def time_backbone(voxel_sets, repeats: int = 2, autocast: bool = False) -> dict:
    """Seconds (and on CUDA peak memory) per forward + backward of the
    SR-UNet34C student per ``(V, 4)`` voxel set (one device), keyed by voxel
    count."""
    from plugins.slidr.models.sparse import SparseUNet
    device = str(voxel_sets[0].device)
    torch.manual_seed(0)
    net = SparseUNet(1, 64).to(device).train()
    out = {}
    for coords in voxel_sets:
        feats = torch.ones(len(coords), 1, device=device)
        target = F.normalize(torch.randn(len(coords), 64, device=device), dim=1)
        times = []
        for i in range(repeats + 1):
            net.zero_grad(set_to_none=True)
            if device.startswith('cuda'):
                torch.cuda.reset_peak_memory_stats()
            sync(device)
            t0 = time.perf_counter()
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=autocast):
                loss = (net(coords, feats).float() * target).sum()
            loss.backward()
            sync(device)
            if i:
                times.append(time.perf_counter() - t0)
        memory = torch.cuda.max_memory_allocated() / 2**20 if device.startswith('cuda') else None
        out[len(coords)] = (statistics.median(times), memory)
    return out


def report_superpixels(images: int) -> list:
    from plugins.slidr.datasets.slic import numba_available, warm_up
    if numba_available():
        print(f'numba SLIC kernels ready in {warm_up():.2f} s (compiled or loaded from cache; '
              'not counted below)')
    rows = superpixel_rows(images)
    print(f'superpixels of 1600x900 photos (scikit-image samples, resized), threads '
          f'{torch.get_num_threads()}; seconds per image; speed-up = scikit-image / method')
    print(f'{"photo":22s} {"skimage":>8s} {"full-res":>9s} {"identical":>9s} {"fast":>7s} '
          f'{"speed-up":>8s} {"parallel":>9s} {"par/ser":>7s} {"labels":>9s} {"recall":>6s} '
          f'{"prec.":>6s}')
    for r in rows:
        print(f'{r["name"]:22s} {r["reference"]:8.2f} {r["full"]:9.2f} {str(r["identical"]):>9s} '
              f'{r["serial"]:7.3f} {r["reference"] / r["serial"]:7.1f}x {r["parallel"]:9.3f} '
              f'{r["parallel"] / r["serial"]:7.2f} {r["labels"][0]:4d}/{r["labels"][1]:<4d} '
              f'{r["recall"]:6.3f} {r["precision"]:6.3f}')
    speed = [r['reference'] / r['serial'] for r in rows]
    print(f'slic_fast as shipped (serial) / scikit-image: median {statistics.median(speed):.1f}x '
          f'(min {min(speed):.1f}x); parallel / serial median '
          f'{statistics.median(r["parallel"] / r["serial"] for r in rows):.2f}; full resolution '
          f'{statistics.median(r["reference"] / r["full"] for r in rows):.2f}x, labels identical: '
          f'{all(r["identical"] for r in rows)}')
    return rows


def report_pooling(device: str, rounds: int, scenes=(1, 4, 8)) -> list:
    print(f'pooling + superpixel NCE, fwd+bwd, device={device}: 6 images of 64x224x416, '
          f'34k 3D rows and 25k pairings per scene; {rounds} interleaved rounds; losses and '
          f'gradients checked equal')
    print('original: SLidR\'s formulation (sparse one-hot matmuls on channels-last rows, '
          'cross-entropy of k.q^T/tau); channels-last: index_add on channels-last rows + the '
          'plugin\'s loss; floor: the plugin\'s loss on the pooled features (fwd+bwd) and one '
          'fresh buffer of the pixel features\' size written')
    print(f'{"scenes":>6s} {"original":>9s} {"chan-last":>9s} {"plugin":>8s} (ms)  '
          f'{"plugin / original":22s} {"plugin / channels-last":22s} {"floor / original":22s} '
          f'floor / channels-last')
    rows = []
    for n in scenes:
        row = time_pooling(n, device, rounds)
        ms = row['ms']
        print(f'{n:6d} {ms["original"]:9.1f} {ms["channels-last"]:9.1f} {ms["plugin"]:8.1f}       '
              f'{format_ratio(row["ratio_original"]):22s} {format_ratio(row["ratio"]):22s} '
              f'{format_ratio(row["floor_original"]):22s} {format_ratio(row["floor"])}')
        rows.append(row)
    return rows


def report_backbone(device: str, scans, repeats: int, autocast: bool) -> dict:
    voxel_sets = [lidar_scan_voxels(n).to(device) for n in scans]
    layer = time_conv_layer(voxel_sets[scans.index(max(scans))], 64, repeats)
    base = layer['times']['per-offset loop']
    print(f'one 3x3x3 submanifold conv 64->64, fwd+bwd, {layer["voxels"]} voxels, '
          f'{layer["pairs"]} neighbour pairs, device={device} (median of {repeats})')
    for name, t in layer['times'].items():
        print(f'  {name:18s} {t * 1000:8.1f} ms   ratio {t / base:.3f}')
    print(f'  largest output difference {layer["diff"]:.2e}')
    backbone = time_backbone(voxel_sets, autocast=autocast)
    first = min(backbone)
    print(f'3D backbone (SR-UNet34C, 37.8 M parameters), forward + backward, device={device}'
          f'{", bfloat16 autocast" if autocast else ""}')
    for count, (t, memory) in backbone.items():
        mem = f'   peak {memory:8.0f} MiB' if memory is not None else ''
        print(f'  {count:7d} voxels {t:8.3f} s   time ratio {t / backbone[first][0]:5.2f} for '
              f'{count / first:4.1f}x the voxels{mem}')
    return dict(conv_layer=layer, backbone=backbone)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--images', type=int, default=3)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument(
        '--scans',
        type=int,
        nargs='*',
        default=None,
        help='batch sizes (ray-cast scans, ~16.5k voxels each) for the 3D '
        'backbone timing (default 1 2 on CPU, 1 2 4 8 16 on CUDA; '
        'none given: skip it)')
    parser.add_argument(
        '--pool-scenes',
        type=int,
        nargs='+',
        default=[1, 4, 8],
        help='scenes per batch for the pooling timing')
    parser.add_argument(
        '--nce-slots',
        type=int,
        nargs='+',
        default=[900, 3600, 7200],
        help='superpixel counts for the loss-alone timing (1, 4, 8 scenes: 900, 3600, 7200)')
    parser.add_argument(
        '--autocast', action='store_true', help='run the 3D backbone under bfloat16 autocast')
    parser.add_argument(
        '--parts',
        nargs='+',
        default=['superpixels', 'pooling', 'backbone'],
        choices=['superpixels', 'pooling', 'loss', 'backbone'])
    args = parser.parse_args(argv)
    if args.scans is None:
        args.scans = [1, 2, 4, 8, 16] if args.device.startswith('cuda') else [1, 2]
    result = {}
    if 'superpixels' in args.parts:
        result['superpixels'] = report_superpixels(args.images)
    if 'pooling' in args.parts:
        result['pooling'] = report_pooling(args.device, args.repeats, args.pool_scenes)
    if 'loss' in args.parts:
        result['loss'] = report_nce(args.device, args.repeats, args.nce_slots)
    if 'backbone' in args.parts and args.scans:
        result.update(report_backbone(args.device, args.scans, args.repeats, args.autocast))
    return result


if __name__ == '__main__':
    main()
