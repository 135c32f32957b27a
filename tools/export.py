"""Export a deployable state dict from a training checkpoint.

    python tools/export.py work_dirs/run/epoch_12.pth deploy.pth --drop teacher dsd_heads
    python tools/export.py CKPT deploy.pth --strip-prefix net   # wrapper -> stock network keys

Training-only parts (teachers, distillation heads) are dropped by prefix or glob
pattern; optimizer state, message hub and random states are not carried over.
The output is ``{'state_dict': ..., 'meta': {...}}``, written atomically, and
loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from plugins.core.checkpoint import export_state_dict, load_checkpoint, save_checkpoint  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description='Export deployable weights')
    parser.add_argument('checkpoint', help='training checkpoint')
    parser.add_argument('out', help='output file')
    parser.add_argument('--drop', nargs='*', default=[],
                        help='module prefixes or glob patterns to remove')
    parser.add_argument('--keep', nargs='*', default=None,
                        help='keep only these prefixes or patterns')
    parser.add_argument('--strip-prefix', default=None,
                        help='remove this leading module path from the kept keys')
    args = parser.parse_args(argv)
    ckpt = load_checkpoint(args.checkpoint)
    state, dropped = export_state_dict(ckpt, args.drop, args.strip_prefix, args.keep)
    meta = dict(ckpt.get('meta', {})) if isinstance(ckpt, dict) else {}
    meta = {k: v for k, v in meta.items() if k in ('epoch', 'iter', 'dataset_meta',
                                                   'mmengine_version', 'experiment_name')}
    meta.update(exported_from=osp.abspath(args.checkpoint), dropped_keys=dropped)
    save_checkpoint({'state_dict': state, 'meta': meta}, args.out)
    n = sum(v.numel() for v in state.values() if hasattr(v, 'numel'))
    print(f'[export] {len(state)} tensors ({n:,} values) -> {args.out}; '
          f'dropped {len(dropped)} keys')


if __name__ == '__main__':
    main()
