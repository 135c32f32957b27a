"""Export a deployable state dict from a training checkpoint.

    python tools/export.py work_dirs/run/epoch_12.pth deploy.pth --drop teacher dsd_heads
    python tools/export.py CKPT deploy.pth --strip-prefix net   # wrapper -> stock network keys
    python tools/export.py CKPT deploy.pth --config CFG --strip-prefix network

With ``--config`` the model is built from the training config (no weights) and
the parts its modules declare training-only (e.g. DSD's ``dsd_heads``, GO-LSD's
denoising generator) are dropped as well.

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


def config_training_only(config: str) -> list:
    """Training-only module prefixes of the model a config builds."""
    import plugins  # noqa: F401  (registers the plugin modules)
    from mmengine.registry import MODELS, init_default_scope

    from plugins.core.checkpoint import training_only_prefixes
    from plugins.core.runner_setup import load_config

    cfg = load_config(config)
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    return training_only_prefixes(MODELS.build(cfg.model))


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
    parser.add_argument('--config', default=None,
                        help='training config: also drop what its model marks training-only')
    args = parser.parse_args(argv)
    drop = list(args.drop)
    if args.config:
        drop += config_training_only(args.config)
    ckpt = load_checkpoint(args.checkpoint)
    state, dropped = export_state_dict(ckpt, drop, args.strip_prefix, args.keep)
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
