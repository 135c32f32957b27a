"""Worker for the two-process test: rank 1 has no ground truth at all."""
import json
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def main(rank: int, world: int, init_file: str, out_dir: str) -> None:
    from tests.golsd.conftest import GOLSD_DEMO, build, samples
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                            world_size=world)
    torch.set_num_threads(1)
    model = build(GOLSD_DEMO, seed=0)
    model.train()
    ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=False)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    keys = []
    for step in range(2):
        torch.manual_seed(step)
        counts = [2, 1] if rank == 0 else [0, 0]
        losses = ddp(torch.randn(2, 3, 96, 96), samples(counts, 96), mode='loss')
        total = sum(losses.values())
        assert torch.isfinite(total), {k: float(v) for k, v in losses.items()}
        opt.zero_grad()
        total.backward()
        opt.step()
        keys.append(sorted(losses))
    with open(os.path.join(out_dir, f'rank{rank}.json'), 'w') as f:
        json.dump(keys, f)
    dist.destroy_process_group()


if __name__ == '__main__':
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
