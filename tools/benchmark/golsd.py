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

import torch  # noqa: E402

PAIRS = {
    'demo': ('configs/golsd/dino-tiny_r18_1xb8-12e_demo-coco.py',
             'configs/golsd/dino-tiny_r18_golsd_1xb8-12e_demo-coco.py'),
    'r50': ('mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
            'configs/golsd/dino-4scale_r50_golsd_8xb2-12e_coco.py'),
}


def build(config: str, device: str, num_classes: int):
    import plugins  # noqa: F401
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
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
        s = DetDataSample(metainfo=dict(img_shape=(size, size), pad_shape=(size, size),
                                        batch_input_shape=(size, size),
                                        ori_shape=(size, size), scale_factor=(1., 1.)))
        s.gt_instances = InstanceData(
            bboxes=torch.cat([xy, xy + wh], 1).to(device),
            labels=torch.randint(0, num_classes, (num_gt,), generator=gen).to(device))
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


def sync(device: str):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--config-pair', choices=sorted(PAIRS), default='demo')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--size', type=int, default=128)
    parser.add_argument('--num-gt', type=int, default=3)
    parser.add_argument('--steps', type=int, default=6)
    parser.add_argument('--warmup', type=int, default=2)
    args = parser.parse_args(argv)
    plain_cfg, golsd_cfg = PAIRS[args.config_pair]
    num_classes = 2 if args.config_pair == 'demo' else 80
    models = {'DINO': build(plain_cfg, args.device, num_classes),
              'GO-LSD DINO': build(golsd_cfg, args.device, num_classes)}
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-5) for k, m in models.items()}
    imgs, samples = make_batch(args.batch, args.size, args.num_gt, num_classes, args.device)
    times = {k: [] for k in models}
    for step in range(args.warmup + args.steps):
        for name, model in models.items():  # alternate A, B, A, B, ...
            sync(args.device)
            t = time.perf_counter()
            train_step(model, opts[name], imgs, samples)
            sync(args.device)
            if step >= args.warmup:
                times[name].append(time.perf_counter() - t)
    mem = {k: peak_memory(m, opts[k], imgs, samples, args.device) for k, m in models.items()}
    loss_t = {k: loss_only(m, imgs, samples, max(3, args.steps), args.device)
              for k, m in models.items()}
    step_t = {k: statistics.median(v) for k, v in times.items()}
    print(f'device={args.device} batch={args.batch} size={args.size} '
          f'gt/img={args.num_gt} configs={args.config_pair} steps={args.steps}')
    mem_label = 'peak mem (MiB)' if args.device.startswith('cuda') else 'saved act (MiB)'
    print(f'{"":14s} {"step (s)":>10s} {mem_label:>15s} {"loss only (ms)":>15s}')
    for k in models:
        print(f'{k:14s} {step_t[k]:10.4f} {mem[k] / 2**20:15.1f} {loss_t[k] * 1e3:15.1f}')
    ratios = dict(step=step_t['GO-LSD DINO'] / step_t['DINO'],
                  memory=mem['GO-LSD DINO'] / max(mem['DINO'], 1.0),
                  loss=loss_t['GO-LSD DINO'] / loss_t['DINO'])
    print(f'ratios GO-LSD / plain: step {ratios["step"]:.3f}  '
          f'peak memory {ratios["memory"]:.3f}  loss computation {ratios["loss"]:.3f}')
    return ratios


if __name__ == '__main__':
    main()
