"""Fixtures for end-to-end runs of the command-line tools."""
import json
import os
import socket
import subprocess
import sys
from typing import List, Sequence

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DET_CONFIG = 'configs/demo/retinanet_r18_1xb8-8e_demo-coco.py'


def det_options(root: str, epochs: int, batch: int = 4, ckpt_interval: int = 1) -> List[str]:
    """--cfg-options that point the demo detection config at ``root``."""
    ann_val = f'{root}/annotations/instances_val.json'
    return [
        f'train_dataloader.dataset.data_root={root}/',
        f'val_dataloader.dataset.data_root={root}/',
        f'test_dataloader.dataset.data_root={root}/',
        f'val_evaluator.ann_file={ann_val}',
        f'test_evaluator.ann_file={ann_val}',
        f'train_dataloader.batch_size={batch}',
        f'train_cfg.max_epochs={epochs}',
        f'train_cfg.val_interval={epochs}',
        f'default_hooks.checkpoint.interval={ckpt_interval}',
        'default_hooks.checkpoint.max_keep_ckpts=-1',
        'param_scheduler.0.end=4',
        'default_hooks.logger.interval=1',
    ]


def run(args: Sequence[str], timeout: float = 600, env=None) -> str:
    """Run a command from the repository root; fail with its output."""
    proc = subprocess.run(
        list(args),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={
            **os.environ,
            **(env or {})
        })
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        pytest.fail(f'command failed ({proc.returncode}): {" ".join(args)}\n{out[-4000:]}')
    return out


def python() -> str:
    return sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def scalar_rows(work_dir: str) -> List[dict]:
    from report import find_scalars, read_scalars
    return read_scalars(find_scalars(work_dir))


@pytest.fixture(scope='session')
def coco_root(tmp_path_factory) -> str:
    from plugins.testing.coco_shapes import make_coco_shapes
    root = str(tmp_path_factory.mktemp('coco'))
    make_coco_shapes(root, splits={'train': 32, 'val': 8}, size=96, seed=1)
    with open(os.path.join(root, 'annotations', 'instances_train.json')) as f:
        assert len(json.load(f)['images']) == 32
    return root
