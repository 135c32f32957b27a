"""MACIL-SD speed: training-step and inference throughput, with and without the
contrastive and self-distillation parts, in one run.

    python tools/benchmark/macil.py                      # batch 128 crops x 200 snippets
    python tools/benchmark/macil.py --batch 32 --steps 5

Training: ``MACILSD.train_step`` of the full method (AV + teacher, four
contrastive terms, λ = 1) against the same AV network with top-k MIL only,
steps alternating in this process, snippets/s = batch × true lengths / median
step time. Inference: the AV network on test videos of 5 crops (snippets/s).
Ratios are against the MIL-only model measured in the same run. The semi-bag
threshold is set at each batch's median bag score before the timed step, so
the contrastive terms run on filled banks.

Loss: the semi-bag banks and the four contrastive terms, forward and backward,
batched (``semi_bags``) against the sample-by-sample construction
(``semi_bags_loop``, one ``topk`` per sample and modality as the reference
builds them), checked equal before timing.
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

import torch
from abtiming import format_ratio, interleaved, round_ratios, sync


def build(full: bool, device: str):
    import plugins  # noqa: F401
    from plugins.core.optim import SubmoduleOptimWrapperConstructor
    from plugins.macil.mmengine import MACILSD
    torch.manual_seed(0)
    options = {} if full else {'loss_contrastive': None}  # the default: the method's loss
    model = MACILSD(teacher=full, **options).to(device)
    model.lambda_b = model.lambda_n = 1.0
    cfg = {'av': dict(optimizer=dict(type='Adam', lr=4e-4))}
    if full:
        cfg['teacher'] = dict(optimizer=dict(type='Adam', lr=8e-5))
    return model, SubmoduleOptimWrapperConstructor(cfg)(model)


def batch(b: int, t: int, device: str) -> dict:
    g = torch.Generator().manual_seed(1)
    visual = torch.rand(b, t, 1024, generator=g)
    lengths = torch.randint(t // 4, t + 1, (b, ), generator=g)
    visual[torch.arange(t)[None] >= lengths[:, None]] = 0.0  # zero padding
    labels = (torch.arange(b) % 2).float()
    return dict(
        visual=visual.to(device),
        audio=torch.randn(b, t, 128, generator=g).to(device),
        labels=labels.to(device)), int(lengths.sum())


def split_at_median(model, data: dict) -> None:
    """Put the semi-bag threshold at the batch's median bag score, so both
    violent and normal banks are filled and the contrastive terms are timed
    (an untrained model puts every video on one side of 0.5). Untimed."""
    from plugins.macil.functional import mil_bag_scores, sequence_lengths
    with torch.no_grad():
        lengths = sequence_lengths(data['visual'])
        bag = mil_bag_scores(model.av(data['visual'], data['audio'])['logits'], lengths)
    model.loss_contrastive.bag_threshold = float(bag.median())


def loss_ratio(b: int, t: int, dim: int, rounds: int, device: str):
    """Batched ÷ sample-loop semi-bags + contrastive terms, fwd+bwd, per-round ratios."""
    from plugins.macil.functional import contrastive_terms, semi_bags, semi_bags_loop
    g = torch.Generator().manual_seed(2)
    lengths = torch.randint(t // 4, t + 1, (b, ), generator=g).to(device)
    ranks = [torch.rand(b, t, generator=g).to(device) for _ in range(2)]
    reps = [torch.randn(b, t, dim, generator=g).to(device).requires_grad_() for _ in range(2)]
    bag = torch.rand(b, generator=g).to(device)

    def run(build):

        def go():
            banks = build(ranks[0], ranks[1], reps[0], reps[1], bag, lengths, float(bag.median()))
            terms, _ = contrastive_terms(banks)
            sum(terms.values()).backward()
            return terms

        return go

    fast, slow = run(semi_bags)(), run(semi_bags_loop)()
    for k in fast:  # the same maths before timing
        torch.testing.assert_close(fast[k], slow[k], rtol=1e-5, atol=1e-6)
    times = interleaved({'loop': run(semi_bags_loop), 'batched': run(semi_bags)}, rounds, 1, device)
    return round_ratios(times, 'loop')['batched']


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--length', type=int, default=200)
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--videos', type=int, default=20, help='test videos for inference')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--loss-rounds', type=int, default=15)
    args = parser.parse_args(argv)
    loss = loss_ratio(args.batch, args.length, 128, args.loss_rounds, args.device)
    print(f'semi-bags + contrastive terms fwd+bwd, batch {args.batch} x {args.length} snippets, '
          f'D = 128: batched / sample loop per round: {format_ratio(loss)}')
    data, snippets = batch(args.batch, args.length, args.device)
    models = {'MIL only': build(False, args.device), 'MACIL-SD': build(True, args.device)}

    def step(name):
        model, wrappers = models[name]

        def run():
            model.train()
            if model.loss_contrastive is not None:
                split_at_median(model, data)  # untimed set-up folded in: cheap, no grad
            model.train_step(data, wrappers)

        return run

    times = interleaved({k: step(k) for k in models}, args.steps, 1, args.device)
    ratio = round_ratios(times, 'MIL only')['MACIL-SD']
    train = {k: snippets / statistics.median(v) for k, v in times.items()}
    video = torch.rand(5, args.length, 1024, device=args.device)
    audio = torch.randn(1, args.length, 128, device=args.device).expand(5, -1, -1)
    infer = {}
    for name, (model, _) in models.items():
        model.eval()
        with torch.no_grad():
            model([video], [audio], mode='predict')
            sync(args.device)
            t0 = time.perf_counter()
            for _ in range(args.videos):
                model([video], [audio], mode='predict')
            sync(args.device)
        infer[name] = args.videos * args.length / (time.perf_counter() - t0)
    print(f'device={args.device}, batch {args.batch} crops x {args.length} snippets '
          f'({snippets} true snippets), {args.steps} interleaved rounds, order swapped each '
          f'round (median); MACIL-SD / MIL-only step time per round: {format_ratio(ratio)}')
    print(f'{"model":10s} {"train snippets/s":>17s} {"ratio":>7s} {"infer snippets/s":>17s} '
          f'{"ratio":>7s}')
    for name in models:
        print(f'{name:10s} {train[name]:17.0f} {train[name] / train["MIL only"]:7.3f} '
              f'{infer[name]:17.0f} {infer[name] / infer["MIL only"]:7.3f}')
    return dict(train=train, infer=infer, loss=loss)


if __name__ == '__main__':
    main()
