"""Worker for the two-process tests.

Modes: ``no_gt`` (rank 1 has no ground truth at all; two steps, loss keys
recorded) and ``groups`` (ranks with 1 and 6 ground truths, hence 20 and 6
dynamic denoising groups; the DN FGL normaliser of each rank recorded).
"""
import json
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

COUNTS = {'no_gt': ([2, 1], [0, 0]), 'groups': ([1, 0], [3, 3])}


def main(rank: int, world: int, init_file: str, out_dir: str, mode: str) -> None:
    from plugins.golsd.mmdet.head import GOLSDHeadMixin
    from tests.golsd.conftest import GOLSD_DEMO, build, samples
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = build(GOLSD_DEMO, seed=0)
    model.train()
    seen = []
    fdr_losses = GOLSDHeadMixin._fdr_losses

    def spy(self, corners, boxes, cls_last, match, gt, targets, avg, counts, dn=''):
        if dn:
            seen.append(dict(avg=avg, num_gt=sum(gt.counts)))
        return fdr_losses(self, corners, boxes, cls_last, match, gt, targets, avg, counts, dn)

    GOLSDHeadMixin._fdr_losses = spy
    ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=False)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    keys = []
    for step in range(2 if mode == 'no_gt' else 1):
        torch.manual_seed(step)
        counts = COUNTS[mode][rank]
        losses = ddp(torch.randn(2, 3, 96, 96), samples(counts, 96), mode='loss')
        total = sum(losses.values())
        assert torch.isfinite(total), {k: float(v) for k, v in losses.items()}
        opt.zero_grad()
        total.backward()
        opt.step()
        keys.append(sorted(losses))
    with open(os.path.join(out_dir, f'rank{rank}.json'), 'w') as f:
        json.dump(dict(keys=keys, dn=seen), f)
    dist.destroy_process_group()


if __name__ == '__main__':
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
