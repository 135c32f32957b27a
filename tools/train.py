"""Train a model from a config on the mmengine Runner (OpenMMLab command line).

Examples:
    python tools/train.py configs/demo/retinanet_r18_1xb8-8e_demo-coco.py
    python tools/train.py CONFIG --work-dir work_dirs/run1 --resume
    torchrun --nproc_per_node 2 tools/train.py CONFIG --launcher pytorch

Works for mmdet, mmseg and plain mmengine configs: the config's
``default_scope`` selects the registries. ``plugins`` is imported first, so
checkpoints load safely and every plugin module is registered even when the
config has no ``custom_imports``. Without a GPU, ``--launcher pytorch`` trains
on CPU with the gloo backend.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from runner_setup import add_common_args, build_runner, check_torchvision_weights, load_config

import plugins  # noqa: F401  (safe loading, registrations)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='folder for logs and checkpoints')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint, or, with no value, from the latest '
        'checkpoint in the work dir')
    parser.add_argument(
        '--amp', action='store_true', help='automatic mixed precision (needs a GPU)')
    parser.add_argument(
        '--auto-scale-lr', action='store_true', help='scale the learning rate by the batch size')
    add_common_args(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    if args.amp:
        from runner_setup import enable_amp
        enable_amp(cfg)
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise ValueError(f'--auto-scale-lr: {args.config} has no '
                             f'auto_scale_lr.base_batch_size')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        from runner_setup import latest_checkpoint
        cfg.resume = True
        cfg.load_from = latest_checkpoint(cfg.work_dir)  # None: start from scratch
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume: no checkpoint {args.resume!r}')
        cfg.resume = True
        cfg.load_from = args.resume
    check_torchvision_weights(cfg)  # the Runner initialises weights before loading any
    runner = build_runner(cfg)
    try:
        runner.train()
    finally:
        from runner_setup import finish_distributed
        del runner  # its DDP wrapper holds the process group
        finish_distributed()


if __name__ == '__main__':
    main()
