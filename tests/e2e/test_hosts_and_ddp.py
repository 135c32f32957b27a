"""mmdet's own train.py with our config; two-process (gloo, CPU) training."""
import os

import mmdet
import pytest

from plugins.core.checkpoint import load_checkpoint

from .conftest import DET_CONFIG, ROOT, det_options, free_port, python, run, scalar_rows

pytestmark = pytest.mark.slow
MMDET_TRAIN = os.path.join(os.path.dirname(mmdet.__file__), '.mim', 'tools', 'train.py')


def _loss_keys(work_dir):
    return {k for row in scalar_rows(work_dir) for k in row if k.startswith('loss')}


@pytest.fixture(scope='module')
def single(coco_root, tmp_path_factory):
    work = str(tmp_path_factory.mktemp('single'))
    run([
        python(), 'tools/train.py', DET_CONFIG, '--work-dir', work, '--cfg-options',
        *det_options(coco_root, 1)
    ])
    return work


def test_mmdet_unmodified_train_script_runs_our_config_and_resumes(coco_root, tmp_path):
    assert os.path.isfile(MMDET_TRAIN), MMDET_TRAIN
    work = str(tmp_path / 'mmdet_tool')
    out = run([
        python(), MMDET_TRAIN,
        os.path.join(ROOT, DET_CONFIG), '--work-dir', work, '--cfg-options',
        *det_options(coco_root, 1)
    ])
    assert 'RNGStateHook' in out  # a type that only custom_imports=['plugins'] registers
    assert os.path.isfile(os.path.join(work, 'epoch_1.pth'))
    # mmdet's --resume goes through mmengine's own load_checkpoint (torch.load with
    # weights_only=True by default) and must accept mmengine's HistoryBuffer etc.
    run([
        python(), MMDET_TRAIN,
        os.path.join(ROOT, DET_CONFIG), '--work-dir', work, '--resume', '--cfg-options',
        *det_options(coco_root, 2)
    ])
    assert load_checkpoint(os.path.join(work, 'epoch_2.pth'))['meta']['epoch'] == 2


def test_two_process_gloo_training_matches_single_process_loss_keys(coco_root, single, tmp_path):
    work = str(tmp_path / 'ddp')
    out = run([
        python(), '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port',
        str(free_port()), 'tools/train.py', DET_CONFIG, '--launcher', 'pytorch', '--work-dir', work,
        '--cfg-options', *det_options(coco_root, 1)
    ],
              env={
                  'OMP_NUM_THREADS': '1',
                  'CUDA_VISIBLE_DEVICES': ''
              })
    assert 'Distributed training is not used' not in out
    assert 'Distributed training: True' in out
    assert _loss_keys(work) == _loss_keys(single) == {'loss', 'loss_cls', 'loss_bbox'}
    ckpt = load_checkpoint(os.path.join(work, 'epoch_1.pth'))
    assert not any(k.startswith('module.') for k in ckpt['state_dict'])
    # 32 images, 2 ranks x batch 4: 4 iterations per epoch instead of 8
    iters = [r['iter'] for r in scalar_rows(work) if 'loss' in r]
    assert max(iters) == 4
