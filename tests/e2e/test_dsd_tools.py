"""DSD through the command-line tools: 3D MONAI DynUNet on the mmengine Runner
(MSD format) and mmseg's 2D UNet (mmseg format), train -> test -> export."""
import os

import pytest
import torch

from plugins.core.checkpoint import load_checkpoint

from .conftest import python, run, scalar_rows

pytestmark = pytest.mark.slow

CFG_3D = 'configs/dsd/dynunet_dsd_1xb1-16e_demo-msd.py'
CFG_2D = 'configs/dsd/unet-s5-d16_fcn_dsd_1xb4-600it_demo-shapes2d-64x64.py'


@pytest.fixture(scope='module')
def msd_task(tmp_path_factory):
    from plugins.testing.msd import make_msd_synthetic
    return make_msd_synthetic(
        str(tmp_path_factory.mktemp('msd')), num_train=5, num_test=1, size=32, num_classes=3)


def test_monai_dynunet_with_dsd_trains_tests_and_exports_to_the_stock_net(msd_task, tmp_path):
    work = str(tmp_path / 'work')
    opts = [
        f'train_dataloader.dataset.task_dir={msd_task}',
        f'val_dataloader.dataset.task_dir={msd_task}',
        f'test_dataloader.dataset.task_dir={msd_task}', 'train_cfg.max_epochs=2',
        'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2',
        'default_hooks.logger.interval=1'
    ]
    run([python(), 'tools/train.py', CFG_3D, '--work-dir', work, '--cfg-options', *opts])
    rows = scalar_rows(work)
    trained = [r for r in rows if 'loss_dsd' in r]
    assert len(trained) == 2 * 3  # 3 training volumes per epoch, batch 1 (2 crops)
    assert all(r['loss_dsd'] == r['loss_dsd'] for r in trained)  # no NaN
    assert {'dsd_kd_enc1', 'dsd_ds_dec1'} <= set(trained[0])
    val = [r for r in rows if 'msd/dice' in r]
    assert val and 0 <= val[-1]['msd/dice'] <= 1 and 'msd/hd95' in val[-1]
    ckpt = os.path.join(work, 'epoch_2.pth')
    out = run([
        python(), 'tools/test.py', CFG_3D, ckpt, '--work-dir',
        str(tmp_path / 't'), '--cfg-options', *opts
    ])
    assert 'msd/dice' in out and 'msd/hd95' in out
    deploy = str(tmp_path / 'deploy.pth')
    run([
        python(), 'tools/export.py', ckpt, deploy, '--config', CFG_3D, '--strip-prefix', 'network'
    ])
    from monai.networks.nets import DynUNet
    net = DynUNet(
        3,
        1,
        3,
        kernel_size=[3] * 5,
        strides=[1, 2, 2, 2, 2],
        upsample_kernel_size=[2, 2, 2, 2],
        filters=[8, 16, 32, 64, 80],
        res_block=True,
        norm_name='instance')
    state = torch.load(deploy, weights_only=True)['state_dict']
    net.load_state_dict(state, strict=True)
    trained_state = load_checkpoint(ckpt)['state_dict']
    assert torch.equal(state['output_block.conv.conv.weight'],
                       trained_state['network.output_block.conv.conv.weight'])


def test_mmseg_unet_with_dsd_trains_and_tests(tmp_path):
    from plugins.testing.shapes2d import make_shapes2d
    root = make_shapes2d(str(tmp_path / 'shapes2d'), num_train=8, num_val=4)
    work = str(tmp_path / 'work')
    opts = [
        f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}', 'train_cfg.max_iters=6',
        'train_cfg.val_interval=6', 'default_hooks.checkpoint.interval=6',
        'default_hooks.logger.interval=1', 'param_scheduler.0.end=6'
    ]
    run([python(), 'tools/train.py', CFG_2D, '--work-dir', work, '--cfg-options', *opts])
    rows = scalar_rows(work)
    trained = [r for r in rows if 'loss_dsd' in r]
    assert len(trained) == 6 and all(r['loss_dsd'] == r['loss_dsd'] for r in trained)
    assert 'dsd_kd_enc3' in trained[0] and 'decode.loss_ce' not in trained[0]
    assert any('mDice' in r for r in rows)
    out = run([
        python(), 'tools/test.py', CFG_2D,
        os.path.join(work, 'iter_6.pth'), '--work-dir',
        str(tmp_path / 't'), '--cfg-options', *opts
    ])
    assert 'mDice' in out
