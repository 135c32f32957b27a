"""MACIL-SD through the command-line tools on the XD-Violence layout:
train (two optimizers, λ and EMA hooks) -> test (PR-AUC, AP) -> export."""
import os

import pytest
import torch

from .conftest import python, run, scalar_rows

pytestmark = pytest.mark.slow

CFG = 'configs/macil/macil-sd_1xb8-12e_demo-xdviolence.py'


def test_macil_trains_tests_and_exports_the_av_network(tmp_path):
    from plugins.testing.xdviolence import make_xdviolence_synthetic
    root = make_xdviolence_synthetic(
        str(tmp_path / 'xdv'), num_train=(4, 4), num_test=(2, 2), length=(8, 30))
    work = str(tmp_path / 'work')
    opts = [
        f'train_dataloader.dataset.data_root={root}', f'test_dataloader.dataset.data_root={root}',
        f'test_evaluator.gt_file={root}/gt.npy', 'train_cfg.max_epochs=3',
        'default_hooks.checkpoint.interval=3', 'default_hooks.logger.interval=1',
        'train_dataloader.batch_size=8'
    ]
    out = run([python(), 'tools/train.py', CFG, '--work-dir', work, '--cfg-options', *opts])
    assert out.count('self-distillation EMA after epoch') == 3 and 'm=0.910000, 36 tensors' in out
    rows = [r for r in scalar_rows(work) if 'teacher_mil' in r]
    assert len(rows) == 3 * 5  # 40 crops / batch 8
    assert [r['lambda'] for r in rows[::5]] == pytest.approx([0.0, 0.1, 0.2])
    assert {'av.lr', 'teacher.lr'} <= set(rows[0]) or {'lr'} <= set(rows[0])
    ckpt = os.path.join(work, 'epoch_3.pth')
    out = run([
        python(), 'tools/test.py', CFG, ckpt, '--work-dir',
        str(tmp_path / 't'), '--cfg-options', *opts
    ])
    assert 'xdv/pr_auc' in out and 'xdv/ap' in out
    deploy = str(tmp_path / 'macil_sd.pth')
    run([python(), 'tools/export.py', ckpt, deploy, '--config', CFG, '--strip-prefix', 'av'])
    from plugins.macil import MACILAudioVisual
    state = torch.load(deploy, weights_only=True)['state_dict']
    assert len(state) == 38
    MACILAudioVisual().load_state_dict(state, strict=True)


def test_two_process_gloo_training_with_two_optimizers(tmp_path):
    from plugins.core.checkpoint import load_checkpoint
    from plugins.testing.xdviolence import make_xdviolence_synthetic

    from .conftest import free_port
    root = make_xdviolence_synthetic(
        str(tmp_path / 'xdv'), num_train=(4, 4), num_test=(1, 1), length=(8, 20))
    work = str(tmp_path / 'ddp')
    out = run([
        python(), '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port',
        str(free_port()), 'tools/train.py', CFG, '--launcher', 'pytorch', '--work-dir', work,
        '--cfg-options', f'train_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}', f'test_evaluator.gt_file={root}/gt.npy',
        'train_cfg.max_epochs=2', 'default_hooks.checkpoint.interval=2',
        'default_hooks.logger.interval=1'
    ],
              env={
                  'OMP_NUM_THREADS': '1',
                  'CUDA_VISIBLE_DEVICES': ''
              })
    assert 'Distributed training: True' in out
    assert 'self-distillation EMA after epoch 1' in out
    state = load_checkpoint(os.path.join(work, 'epoch_2.pth'))['state_dict']
    assert 'av.fc_a.weight' in state and 'teacher.fc.weight' in state
    assert not any('module.' in k for k in state)
    # 40 crops over 2 ranks x batch 8: 3 iterations per epoch
    assert max(r['iter'] for r in scalar_rows(work) if 'loss' in r) == 6
