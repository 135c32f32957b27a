"""GO-LSD DINO vs plain DINO: train-step time, peak memory, loss computation.

    python tools/benchmark/golsd.py                       # demo-size models, CPU
    python tools/benchmark/golsd.py --config-pair r50 --device cuda --batch 2 --size 800

Both models are built from configs that differ only in the plugin parts and run
on the same inputs in this one process; steps alternate between the two so that
drift (thermal, other load) hits both alike. Reported numbers are ratios against
the plain model measured in the same run.
"""
from __future__ import annotations

import argparse
import os.path as osp
import statistics
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # abtiming

import torch
from abtiming import format_ratio, interleaved, medians, round_ratios, sync

PAIRS = {
    'demo': ('configs/golsd/dino-tiny_r18_1xb8-12e_demo-coco.py',
             'configs/golsd/dino-tiny_r18_golsd_1xb8-12e_demo-coco.py'),
    'r50': ('mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
            'configs/golsd/dino-4scale_r50_golsd_8xb2-12e_coco.py'),
}


def build(config: str, device: str, num_classes: int):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import plugins  # noqa: F401
    register_all_modules()
    if '::' in config:  # an upstream config inside an installed package
        from mmengine.hub import get_config
        cfg = get_config(config)
    else:
        cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.model.backbone.init_cfg = None
    cfg.model.bbox_head.num_classes = num_classes
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).to(device)
    model.init_weights()
    model.train()
    return model


def make_batch(batch: int, size: int, num_gt: int, num_classes: int, device: str):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    gen = torch.Generator().manual_seed(0)
    imgs = torch.randn(batch, 3, size, size, generator=gen).to(device)
    samples = []
    for _ in range(batch):
        xy = torch.rand(num_gt, 2, generator=gen) * size * 0.7
        wh = torch.rand(num_gt, 2, generator=gen) * size * 0.25 + 4
        s = DetDataSample(
            metainfo=dict(
                img_shape=(size, size),
                pad_shape=(size, size),
                batch_input_shape=(size, size),
                ori_shape=(size, size),
                scale_factor=(1., 1.)))
        s.gt_instances = InstanceData(
            bboxes=torch.cat([xy, xy + wh], 1).to(device),
            labels=torch.randint(0, num_classes, (num_gt, ), generator=gen).to(device))
        samples.append(s)
    return imgs, samples


class SavedActivations:
    """Bytes of the distinct tensors autograd keeps for backward (CPU proxy of
    the training peak: the activations dominate it; deterministic, unlike RSS)."""

    def __enter__(self):
        self.bytes = 0
        self._seen = set()

        def pack(t):
            storage = t.untyped_storage()
            key = (storage.data_ptr(), storage.nbytes())
            if key not in self._seen:
                self._seen.add(key)
                self.bytes += storage.nbytes()
            return t

        self._ctx = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


def train_step(model, opt, imgs, samples):
    losses = model.loss(imgs, samples)
    total = sum(losses.values())
    opt.zero_grad(set_to_none=True)
    total.backward()
    opt.step()
    return losses


def peak_memory(model, opt, imgs, samples, device: str) -> float:
    """CUDA: peak allocator bytes above the level before the step.
    CPU: bytes of the activations saved for backward during the step."""
    if device.startswith('cuda'):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        train_step(model, opt, imgs, samples)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    with SavedActivations() as m:
        train_step(model, opt, imgs, samples)
    return float(m.bytes)


def loss_only(model, imgs, samples, reps: int, device: str) -> float:
    """Median time of ``bbox_head.loss`` on cached decoder outputs."""
    with torch.no_grad():
        feats = model.extract_feat(imgs)
        inputs = model.forward_transformer(feats, samples)
    times = []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        model.bbox_head.loss(**inputs, batch_data_samples=samples)
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# --- FDR losses alone: the plugin's batched path against a per-layer loop ---------------


def fdr_loss_case(batch: int,
                  queries: int = 300,
                  layers: int = 6,
                  classes: int = 80,
                  reg_max: int = 32,
                  gt_per_img: int = 7,
                  device: str = 'cpu',
                  seed: int = 0):
    """Decoder outputs and per-output Hungarian-like matches of DINO-R50 size."""
    from plugins.golsd.functional import weighting_function
    gen = torch.Generator().manual_seed(seed)
    corners = torch.randn(layers, batch, queries, 4 * (reg_max + 1), generator=gen)
    ctr = torch.rand(layers, batch, queries, 2, generator=gen) * 0.6 + 0.2
    size = torch.rand(layers, batch, queries, 2, generator=gen) * 0.3 + 0.05
    boxes = torch.cat([ctr, size], -1)
    cls_last = torch.randn(batch, queries, classes, generator=gen)
    gt_ctr = torch.rand(batch * gt_per_img, 2, generator=gen) * 0.6 + 0.2
    gt_size = torch.rand(batch * gt_per_img, 2, generator=gen) * 0.3 + 0.05
    gt_xyxy = torch.cat([gt_ctr - gt_size / 2, gt_ctr + gt_size / 2], -1)
    sets = []  # one one-to-one matching per layer, the pre boxes and the encoder
    for _ in range(layers + 2):
        b = torch.arange(batch).repeat_interleave(gt_per_img)
        q = torch.stack([torch.randperm(queries, generator=gen)[:gt_per_img]
                         for _ in range(batch)]).reshape(-1)
        g = torch.arange(gt_per_img).repeat(batch)
        sets.append((b, q, g))
    anchors = torch.cat([ctr[0], size[0]], -1)
    project = weighting_function(reg_max, 4.0, 0.5)
    to = dict(device=device)
    return dict(
        corners=corners.to(**to),
        boxes=boxes.to(**to),
        cls_last=cls_last.to(**to),
        gt_xyxy=gt_xyxy.to(**to),
        sets=[tuple(t.to(**to) for t in m) for m in sets],
        anchors=anchors.to(**to),
        project=project.to(**to),
        gt_per_img=gt_per_img)


def _targets(case, b, q, g):
    from plugins.golsd.functional import box_to_distance, two_bin_targets
    with torch.no_grad():
        rows = b * case['gt_per_img'] + g
        phi = box_to_distance(case['anchors'][b, q], case['gt_xyxy'][rows], 4.0)
        return two_bin_targets(phi, case['project']), rows


def fdr_batched(case, corners):
    """The plugin: vectorised GO union, then :func:`fdr_layer_losses`."""
    from plugins.golsd.functional import fdr_layer_losses, go_union
    b, q, g = go_union(case['sets'])
    targets, rows = _targets(case, b, q, g)
    conf = case['cls_last'].sigmoid().max(-1).values
    fgl, ddf = fdr_layer_losses(corners, case['boxes'], conf, b, q, case['gt_xyxy'][rows], targets,
                                max(b.numel(), 1), None, 5.0)
    return fgl.sum() + ddf.sum()


def fdr_per_layer(case, corners):
    """Straightforward: the GO vote per image in Python, then each layer's FGL
    and DDF on its own slice of the stack (teacher softmax once per student)."""
    from collections import Counter

    from plugins.golsd.functional import aligned_iou, cxcywh_to_xyxy, ddf_loss, fgl_loss
    batch = corners.shape[1]
    bs, qs, gs = [], [], []
    for img in range(batch):
        votes = Counter()
        for b, q, g in case['sets']:
            sel = b == img
            votes.update(zip(q[sel].tolist(), g[sel].tolist()))
        best = {}
        for (q, g), n in sorted(votes.items()):
            if q not in best or n > best[q][1]:
                best[q] = (g, n)
        for q in sorted(best):
            bs.append(img)
            qs.append(q)
            gs.append(best[q][0])
    dev = corners.device
    b, q, g = (torch.tensor(x, dtype=torch.long, device=dev) for x in (bs, qs, gs))
    (tl, wl, wr), rows = _targets(case, b, q, g)
    conf = case['cls_last'].sigmoid().max(-1).values
    matched = torch.zeros_like(conf, dtype=torch.bool)
    matched[b, q] = True
    avg = max(b.numel(), 1)
    total = 0
    layers = corners.shape[0]
    for i in range(layers):
        with torch.no_grad():
            u = aligned_iou(cxcywh_to_xyxy(case['boxes'][i][b, q]), case['gt_xyxy'][rows])
        total = total + fgl_loss(corners[i][b, q], tl, wl, wr, u, avg, check=False)
        if i < layers - 1:
            w = conf.clone()
            w[b, q] = u
            total = total + ddf_loss(corners[i], corners[-1], matched, w, 5.0)
    return total


def fdr_loss_rows(batches, rounds: int, warmup: int, device: str) -> list:
    """Per batch size: both times, the per-round ratio summary and the value check."""
    rows = []
    for batch in batches:
        case = fdr_loss_case(batch, device=device)
        leaf = {k: case['corners'].clone().requires_grad_(True) for k in ('plugin', 'loop')}
        values = {
            'plugin': fdr_batched(case, leaf['plugin']),
            'loop': fdr_per_layer(case, leaf['loop'])
        }
        grads = {k: torch.autograd.grad(v, leaf[k])[0] for k, v in values.items()}
        torch.testing.assert_close(values['plugin'], values['loop'], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grads['plugin'], grads['loop'], rtol=1e-4, atol=1e-7)

        def step(fn, x):  # gradient returned, not accumulated (decoder outputs are no leaves)
            return lambda: torch.autograd.grad(fn(case, x), x)

        times = interleaved(
            {
                'loop': step(fdr_per_layer, leaf['loop']),
                'plugin': step(fdr_batched, leaf['plugin'])
            }, rounds, warmup, device)
        med = medians(times)
        rows.append(
            dict(
                batch=batch,
                loop_ms=med['loop'] * 1e3,
                plugin_ms=med['plugin'] * 1e3,
                ratio=round_ratios(times, 'loop')['plugin']))
    return rows


def model_step_ratios(args) -> dict:
    """Train-step time, memory and loss-computation ratios, GO-LSD DINO ÷ DINO."""
    plain_cfg, golsd_cfg = PAIRS[args.config_pair]
    num_classes = 2 if args.config_pair == 'demo' else 80
    models = {
        'DINO': build(plain_cfg, args.device, num_classes),
        'GO-LSD DINO': build(golsd_cfg, args.device, num_classes)
    }
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-5) for k, m in models.items()}
    imgs, samples = make_batch(args.batch, args.size, args.num_gt, num_classes, args.device)
    times = interleaved(
        {k: (lambda k=k: train_step(models[k], opts[k], imgs, samples))
         for k in models}, args.steps, args.warmup, args.device)
    mem = {k: peak_memory(m, opts[k], imgs, samples, args.device) for k, m in models.items()}
    loss_t = {
        k: loss_only(m, imgs, samples, max(3, args.steps), args.device)
        for k, m in models.items()
    }
    step_t = medians(times)
    step_ratio = round_ratios(times, 'DINO')['GO-LSD DINO']
    print(f'train step: device={args.device} batch={args.batch} size={args.size} '
          f'gt/img={args.num_gt} configs={args.config_pair} rounds={args.steps} '
          f'(+{args.warmup} warm-up; A/B interleaved, order swapped each round)')
    mem_label = 'peak mem (MiB)' if args.device.startswith('cuda') else 'saved act (MiB)'
    print(f'{"":14s} {"step (s)":>10s} {mem_label:>15s} {"loss only (ms)":>15s}')
    for k in models:
        print(f'{k:14s} {step_t[k]:10.4f} {mem[k] / 2**20:15.1f} {loss_t[k] * 1e3:15.1f}')
    ratios = dict(
        step=step_ratio[0],
        memory=mem['GO-LSD DINO'] / max(mem['DINO'], 1.0),
        loss=loss_t['GO-LSD DINO'] / loss_t['DINO'])
    print(f'ratios GO-LSD / plain: step {format_ratio(step_ratio)} (median, range of per-round '
          f'ratios)  memory {ratios["memory"]:.3f}  loss computation {ratios["loss"]:.3f}')
    return ratios


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--part',
        choices=('step', 'loss', 'all'),
        default='all',
        help='whole train steps of the two detectors, the FDR losses alone '
        '(plugin vs a per-layer loop), or both')
    parser.add_argument('--config-pair', choices=sorted(PAIRS), default='demo')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--size', type=int, default=128)
    parser.add_argument('--num-gt', type=int, default=3)
    parser.add_argument('--steps', type=int, default=10, help='timed rounds')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--loss-batches', type=int, nargs='+', default=[1, 4, 16, 64])
    args = parser.parse_args(argv)
    out = {}
    if args.part in ('step', 'all'):
        out['step'] = model_step_ratios(args)
    if args.part in ('loss', 'all'):
        rows = fdr_loss_rows(args.loss_batches, args.steps, args.warmup, args.device)
        print(f'FDR losses (GO union + FGL + DDF, fwd+bwd), Q=300, L=6, C=80, R=32, 7 GT/img, '
              f'device={args.device}, {args.steps} rounds; values and gradients checked equal')
        print(f'{"batch":>6s} {"per-layer (ms)":>15s} {"plugin (ms)":>12s}  plugin / per-layer')
        for r in rows:
            print(f'{r["batch"]:6d} {r["loop_ms"]:15.1f} {r["plugin_ms"]:12.1f}  '
                  f'{format_ratio(r["ratio"])}')
        out['loss'] = rows
    return out


if __name__ == '__main__':
    main()
