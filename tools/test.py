"""Evaluate a checkpoint with the config's test loop and metrics.

Examples:
    python tools/test.py CONFIG CHECKPOINT
    python tools/test.py CONFIG CHECKPOINT --out results.pkl --work-dir work_dirs/eval
    python tools/test.py CONFIG CHECKPOINT --non-strict   # partial weights on purpose
    python tools/test.py CONFIG CHECKPOINT --show-dir work_dirs/vis   # draw the predictions
    torchrun --nproc_per_node 2 tools/test.py CONFIG CHECKPOINT --launcher pytorch

The checkpoint must hold exactly the model's tensors (training-only parts such as
GO-LSD's denoising embedding may be missing); otherwise the run stops before
evaluating, naming the missing, unexpected and mis-shaped keys.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from runner_setup import add_common_args, build_runner, drop_training_parts, load_config

import plugins  # noqa: F401


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='folder for the evaluation logs')
    parser.add_argument('--out', help='dump the raw predictions to this .pkl file')
    parser.add_argument(
        '--show-dir',
        help="draw every test image's predictions into this folder with the "
        "config's visualizer (mmdet DetLocalVisualizer, mmseg "
        'SegLocalVisualizer)')
    parser.add_argument(
        '--non-strict',
        action='store_true',
        help='evaluate even if the checkpoint does not hold exactly the '
        "model's tensors (missing ones keep their initial values)")
    add_common_args(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    from plugins.core.checkpoint import check_state_dict_matches, load_checkpoint
    ckpt = load_checkpoint(args.checkpoint)  # missing / damaged / unsafe: stop before building
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    if args.work_dir is None:
        cfg.work_dir = osp.join(cfg.work_dir, 'test')
    cfg.load_from = args.checkpoint
    cfg.resume = False
    drop_training_parts(cfg)  # a test run reads only the test data
    if args.show_dir:
        from runner_setup import enable_show_dir
        enable_show_dir(cfg, args.show_dir)
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError(f'--out must end with .pkl or .pickle, got {args.out!r}')
        evaluator = cfg.test_evaluator
        dump = dict(type='DumpResults', out_file_path=args.out)
        cfg.test_evaluator = (
            list(evaluator) + [dump] if isinstance(evaluator, (list, tuple)) else [evaluator, dump])
    runner = build_runner(cfg)
    if not args.non_strict:
        check_state_dict_matches(
            getattr(runner.model, 'module', runner.model),  # DDP
            ckpt,
            f'checkpoint {args.checkpoint!r}')
    del ckpt  # the runner loads its weights itself
    try:
        return runner.test()
    finally:
        from runner_setup import finish_distributed
        del runner  # its DDP wrapper holds the process group
        finish_distributed()


if __name__ == '__main__':
    main()
