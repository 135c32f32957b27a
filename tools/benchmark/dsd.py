"""DSD memory and speed: plain Dice-CE vs straightforward vs lean DSD.

    python tools/benchmark/dsd.py                        # 3 classes 64³ b1, 8 classes 96³ b2
    python tools/benchmark/dsd.py --settings 8:2:96 --steps 3

On a stock MONAI DynUNet (filters 32–320, the reference configuration). The
two DSD modes are first checked to give the same loss. Step times are medians
of rounds running the three modes back to back, in reverse order every other
round, and the time ratios the median (and range) of the ratios within each
round; peak memory is measured per mode in a fresh child process (CPU: the
peak resident set during one training step above the level before it, with
the kernel's high-water mark reset and glibc's mmap threshold fixed so freed
blocks go back to the system; CUDA: the allocator's peak). Ratios are against
plain Dice-CE measured in the same run.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # abtiming

import torch
from abtiming import interleaved, medians, round_ratios

MODES = ('plain', 'straightforward', 'lean')


def build_step(mode: str, classes: int, batch: int, size: int, device: str):
    """A closure running one forward + backward of ``mode``."""
    from monai.networks.nets import DynUNet

    from plugins.dsd import DSDLoss, DSDTaps
    from plugins.dsd.functional import dice_ce
    torch.manual_seed(0)
    net = DynUNet(
        3,
        1,
        classes,
        kernel_size=[3] * 5,
        strides=[1, 2, 2, 2, 2],
        upsample_kernel_size=[2, 2, 2, 2],
        filters=[32, 64, 128, 256, 320],
        res_block=True,
        norm_name='instance').to(device)
    net.train()
    loss_fn = None
    if mode != 'plain':
        loss_fn = DSDLoss(DSDTaps(net, 'dynunet', classes, probe_size=32), strategy=mode)
    x = torch.randn(batch, 1, size, size, size, device=device)
    y = torch.randint(0, classes, (batch, 1, size, size, size), device=device)

    def step():
        net.zero_grad(set_to_none=True)
        out = net(x)
        if loss_fn is None:
            dice, ce = dice_ce(out, y)
            loss = dice + ce
        else:
            loss = loss_fn(out, y)
        loss.backward()
        if device.startswith('cuda'):
            torch.cuda.synchronize()
        return float(loss.detach())

    return step


def _status(key: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def memory_worker(mode: str, classes: int, batch: int, size: int, device: str) -> None:
    """Child process: one warm-up step, then the peak of one measured step."""
    step = build_step(mode, classes, batch, size, device)
    step()
    gc.collect()
    if device.startswith('cuda'):
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # reset the resident high-water mark
        base = _status('VmRSS')
        step()
        peak = _status('VmHWM') - base
    print(json.dumps({'peak': peak}))


def measure_memory(mode: str, classes: int, batch: int, size: int, device: str) -> float:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536', MALLOC_TRIM_THRESHOLD_='0')
    out = subprocess.run([
        sys.executable,
        os.path.abspath(__file__), '--_worker', mode,
        str(classes),
        str(batch),
        str(size), device
    ],
                         capture_output=True,
                         text=True,
                         env=env,
                         check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])['peak'])


def run_setting(classes: int, batch: int, size: int, steps: int, device: str) -> dict:
    steps_fn = {m: build_step(m, classes, batch, size, device) for m in MODES}
    # same seed, same network and data: the two DSD modes must give the same loss
    first = {m: steps_fn[m]() for m in MODES}
    if abs(first['lean'] - first['straightforward']) > 1e-4 * max(1.0, abs(first['lean'])):
        raise AssertionError(f'lean and straightforward DSD losses differ: {first}')
    times = interleaved(steps_fn, steps, 0, device)  # the check above warmed every mode up
    del steps_fn
    gc.collect()
    mem = {m: measure_memory(m, classes, batch, size, device) for m in MODES}
    summary = round_ratios(times, 'plain')
    return dict(
        step=medians(times),
        mem=mem,
        ratio={
            m: v[0]
            for m, v in summary.items()
        },
        spread={
            m: v[1:]
            for m, v in summary.items()
        },
        loss=first)


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--settings',
        nargs='+',
        default=['3:1:64', '8:2:96'],
        help='classes:batch:size, e.g. 8:2:96')
    parser.add_argument('--steps', type=int, default=4)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--_worker', nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:
        mode, c, b, s, dev = args._worker
        memory_worker(mode, int(c), int(b), int(s), dev)
        return []
    rows = []
    print(f'device={args.device}, DynUNet filters 32-320, steps={args.steps} (median; '
          f'time/plain: median and range of the per-round ratios)')
    print(f'{"setting":14s} {"mode":16s} {"step (s)":>9s} {"peak (MiB)":>11s} '
          f'{"time/plain":>11s} {"range":>13s} {"mem/plain":>10s}')
    for setting in args.settings:
        c, b, s = (int(v) for v in setting.split(':'))
        r = run_setting(c, b, s, args.steps, args.device)
        for m in MODES:
            lo, hi = r['spread'][m]
            print(f'C={c} B={b} {s}^3 {m:16s} {r["step"][m]:9.2f} '
                  f'{r["mem"][m] / 2**20:11.0f} {r["ratio"][m]:11.3f} '
                  f'{f"{lo:.3f}-{hi:.3f}":>13s} {r["mem"][m] / r["mem"]["plain"]:10.3f}')
        extra_sf = r['mem']['straightforward'] - r['mem']['plain']
        extra_lean = r['mem']['lean'] - r['mem']['plain']
        print(f'  extra memory over plain: straightforward {extra_sf / 2**20:.0f} MiB, '
              f'lean {extra_lean / 2**20:.0f} MiB (lean/straightforward '
              f'{extra_lean / max(extra_sf, 1):.3f}; target <= 0.333)')
        rows.append(dict(setting=setting, **r))
    return rows


if __name__ == '__main__':
    main()
