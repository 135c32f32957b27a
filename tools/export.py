"""Export a deployable state dict from a training checkpoint.

    python tools/export.py work_dirs/run/epoch_12.pth deploy.pth --drop teacher dsd_heads
    python tools/export.py CKPT deploy.pth --strip-prefix net   # wrapper -> stock network keys
    python tools/export.py CKPT deploy.pth --config CFG --strip-prefix network

The model is built (no weights) from ``--config`` or, without it, from the
training config that mmengine stores in the checkpoint, and the parts its
modules declare training-only (e.g. DSD's ``dsd_heads``, GO-LSD's denoising
generator) are dropped as well. ``--drop`` takes module paths, matched also when
nested (``dsd_heads`` drops ``backbone.dsd_heads.*``), or glob patterns; one that
matches nothing is an error. The tool prints what it dropped.

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

from plugins.core.checkpoint import export_state_dict, load_checkpoint, save_checkpoint


def config_training_only(config: str = None, text: str = None) -> list:
    """Training-only module prefixes of the model a config (file or text) builds."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    from runner_setup import load_config

    import plugins  # noqa: F401  (registers the plugin modules)
    from plugins.core.checkpoint import training_only_prefixes

    cfg = load_config(config) if config else Config.fromstring(text, '.py')
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    return training_only_prefixes(MODELS.build(cfg.model))


def _summary(dropped: list, patterns: list) -> str:
    from plugins.core.checkpoint import _matches
    parts = []
    for p in patterns:
        n = sum(_matches(k, p) for k in dropped)
        if n:
            parts.append(f'{p} ({n})')
    return ', '.join(parts)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description='Export deployable weights')
    parser.add_argument('checkpoint', help='training checkpoint')
    parser.add_argument('out', help='output file')
    parser.add_argument(
        '--drop', nargs='*', default=[], help='module prefixes or glob patterns to remove')
    parser.add_argument(
        '--keep', nargs='*', default=None, help='keep only these prefixes or patterns')
    parser.add_argument(
        '--strip-prefix', default=None, help='remove this leading module path from the kept keys')
    parser.add_argument(
        '--config',
        default=None,
        help='training config: also drop what its model marks training-only')
    args = parser.parse_args(argv)
    ckpt = load_checkpoint(args.checkpoint)
    keys = list(ckpt.get('state_dict', ckpt)) if isinstance(ckpt, dict) else []
    from plugins.core.checkpoint import unmatched_patterns
    missing = unmatched_patterns(keys, args.drop)
    if missing:
        raise ValueError(f'--drop {missing} match(es) no key of {args.checkpoint} '
                         f'({len(keys)} keys, e.g. {keys[:3]}); nothing was written')
    drop = list(args.drop)
    stored = (ckpt.get('meta') or {}).get('cfg') if isinstance(ckpt, dict) else None
    if args.config:
        drop += config_training_only(config=args.config)
    elif isinstance(stored, str):
        drop += config_training_only(text=stored)
        print('[export] model built from the training config stored in the checkpoint')
    else:
        print('[export] no --config and no training config in the checkpoint: only --drop '
              'applies')
    state, dropped = export_state_dict(ckpt, drop, args.strip_prefix, args.keep)
    meta = dict(ckpt.get('meta', {})) if isinstance(ckpt, dict) else {}
    meta = {
        k: v
        for k, v in meta.items()
        if k in ('epoch', 'iter', 'dataset_meta', 'mmengine_version', 'experiment_name')
    }
    meta.update(exported_from=osp.abspath(args.checkpoint), dropped_keys=dropped)
    save_checkpoint({'state_dict': state, 'meta': meta}, args.out)
    n = sum(v.numel() for v in state.values() if hasattr(v, 'numel'))
    print(f'[export] {len(state)} tensors ({n:,} values) -> {args.out}; '
          f'dropped {len(dropped)} keys' + (f': {_summary(dropped, drop)}' if dropped else ''))


if __name__ == '__main__':
    main()
