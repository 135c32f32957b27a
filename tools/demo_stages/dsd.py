"""DSD: 3D MONAI DynUNet (Runner and SupervisedTrainer) and the 2D mmseg UNet, with and without DSD."""
from __future__ import annotations

import os.path as osp
from typing import List

from .common import DemoContext, markdown_table, merged_config, train_and_eval

#: position of the stage in a full demo
ORDER = 2
DSD_EPOCHS = 16
DSD_2D_ITERS = 600


def run(ctx: DemoContext) -> str:
    """DSD vs the same network without it: 3D MONAI DynUNet (MSD format) on the
    mmengine Runner and in MONAI's SupervisedTrainer; 2D mmseg UNet."""
    import json

    from plugins.testing.msd import make_msd_synthetic
    from plugins.testing.shapes2d import make_shapes2d

    task = osp.join(ctx.data, 'msd', 'Task90_Synthetic')
    if not osp.isfile(osp.join(task, 'dataset.json')):
        make_msd_synthetic(
            osp.dirname(task),
            osp.basename(task),
            num_train=10,
            num_test=2,
            size=48,
            num_classes=3,
            seed=0)
    epochs = 2 if ctx.quick else DSD_EPOCHS
    opts = [f'{k}_dataloader.dataset.task_dir={task}' for k in ('train', 'val', 'test')]
    opts += [
        f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
        f'default_hooks.checkpoint.interval={epochs}'
    ]
    runs3d = [('DynUNet, Dice-CE (plain)', 'dsd3d_plain',
               'configs/dsd/dynunet_1xb1-16e_demo-msd.py', []),
              ('DynUNet + DSD', 'dsd3d_dsd', 'configs/dsd/dynunet_dsd_1xb1-16e_demo-msd.py', []),
              ('DynUNet + DSD (lean)', 'dsd3d_lean', 'configs/dsd/dynunet_dsd_1xb1-16e_demo-msd.py',
               ['model.loss_dsd.strategy=lean'])]
    if ctx.quick:
        runs3d = runs3d[:2]
    rows, slices = [], []
    for label, name, config, extra in runs3d:
        run = train_and_eval(ctx, name, config, opts + extra, epochs, 8)
        slices.append((label, config, run['ckpt'], opts + extra))
        m = run['metrics']
        rows.append([
            label, 'mmengine Runner (tools/train.py)', f"{run['train_s']:.0f}",
            m.get('msd/dice', float('nan')),
            m.get('msd/dice_c1', float('nan')),
            m.get('msd/dice_c2', float('nan')),
            m.get('msd/hd95', float('nan'))
        ])
    out_json = osp.join(ctx.out, 'dsd_supervised_trainer.json')
    ctx.run_tool([
        'tools/examples/dsd_supervised_trainer.py', '--task', task, '--dsd', 'straightforward',
        '--epochs',
        str(2 if ctx.quick else 2 * epochs), '--num-val', '2', '--json', out_json
    ], 'dsd_supervised_trainer.log', 'dsd: MONAI SupervisedTrainer + DSD')
    with open(out_json) as f:
        v = json.load(f)
    rows.append([
        'DynUNet + DSD', 'MONAI SupervisedTrainer (example)', f"{v['train_s']:.0f}", v['dice'],
        v['dice_c1'], v['dice_c2'], v['hd95']
    ])
    table3d = markdown_table([
        'model', 'trained by', 'train time (s)', 'mean Dice', 'Dice c1', 'Dice c2', 'HD95 (voxels)'
    ], rows)
    picture = draw_segmentation_slices(slices, osp.join(ctx.out, 'dsd_slices.png'))

    root2d = osp.join(ctx.data, 'shapes2d')
    if not osp.isdir(osp.join(root2d, 'ann_dir', 'val')):
        make_shapes2d(root2d, seed=0)
    iters = 20 if ctx.quick else DSD_2D_ITERS
    opts2d = [f'{k}_dataloader.dataset.data_root={root2d}' for k in ('train', 'val', 'test')]
    opts2d += [
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
        f'default_hooks.checkpoint.interval={iters}', f'param_scheduler.0.end={iters}'
    ]
    rows2d = []
    for label, name, config in (
        ('UNet-FCN + aux head (upstream recipe)', 'dsd2d_plain',
         'configs/dsd/unet-s5-d16_fcn_1xb4-600it_demo-shapes2d-64x64.py'),
        ('UNet-FCN + DSD', 'dsd2d_dsd',
         'configs/dsd/unet-s5-d16_fcn_dsd_1xb4-600it_demo-shapes2d-64x64.py')):
        run = train_and_eval(ctx, name, config, opts2d, iters, 1, by_epoch=False)
        m = run['metrics']
        rows2d.append([
            label, iters, f"{run['train_s']:.0f}",
            m.get('mDice', float('nan')),
            m.get('mIoU', float('nan'))
        ])
    table2d = markdown_table(['model', 'iterations', 'train time (s)', 'mDice (%)', 'mIoU (%)'],
                             rows2d)
    return '\n'.join([
        '## DSD on U-shaped networks', '',
        f'**3D, MONAI DynUNet.** A synthetic task in the Medical Segmentation Decathlon layout '
        f'({task}: `dataset.json`, NIfTI `imagesTr/`, `labelsTr/`; 10 training volumes of 48³, '
        f'3 classes, 2 held out), MONAI transforms (random 32³ crops by label, flips, '
        f'rotations, intensity shift), AdamW 1e-3, {epochs} epochs. Evaluation: sliding-window '
        'inference, MONAI Dice and HD95 without background (HD95 in voxels). DSD is two keys '
        'in the config, `dsd_taps` and `loss_dsd` (or two lines in a MONAI script); the network '
        'stays the stock DynUNet. The lean strategy computes the same loss with less memory; it '
        'differs from the '
        'straightforward run only by float rounding in the gradients, accumulated over '
        'training.', '', table3d, '', f'![slices]({osp.basename(picture)})', '',
        'The first test volume, its most annotated axial slice: ground truth and each '
        "model's sliding-window prediction (class 1 orange, class 2 green).", '',
        f'**2D, mmseg UNet (FCN head).** Generated 64×64 images in mmseg\'s layout '
        f'({root2d}: `img_dir/`, `ann_dir/` PNGs; 48 train, 12 val, 3 classes, a 255 frame '
        'that is not annotated), base 16 channels, AdamW, batch 4. The DSD config is the '
        'plain one plus the three-line change (segmentor type, no auxiliary head, options).', '',
        table2d, ''
    ])


def draw_segmentation_slices(runs: List[tuple], out_png: str) -> str:
    """One test volume's most annotated axial slice: image, ground truth and the
    prediction of each ``(label, config, checkpoint, options)`` run (the
    model's own sliding-window ``predict``)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import torch
    from matplotlib.colors import ListedColormap
    from mmengine.registry import MODELS
    from mmengine.runner import Runner, load_checkpoint

    import plugins  # noqa: F401

    panels, image, label = [], None, None
    for name, config, ckpt, options in runs:
        cfg = merged_config(config, options)
        model = MODELS.build(cfg.model)
        load_checkpoint(model, ckpt, map_location='cpu', logger='silent')
        model.eval()
        batch = next(iter(Runner.build_dataloader(cfg.test_dataloader)))
        with torch.no_grad():
            out = model.test_step(batch)[0]
            data = model.data_preprocessor(batch, False)
        if image is None:
            image = data['inputs'][0, 0].float()
            label = out['label'][0]
        panels.append((name, out['pred'][0]))
    z = int((label > 0).flatten(0, 1).sum(0).argmax())  # the most annotated axial slice
    cmap = ListedColormap(['black', '#e6550d', '#31a354', '#3182bd', '#756bb1'])
    cols = [('image', image[..., z], 'gray'), ('ground truth', label[..., z], cmap)]
    cols += [(name, pred[..., z], cmap) for name, pred in panels]
    fig, axes = plt.subplots(1, len(cols), figsize=(2.6 * len(cols), 2.9))
    for ax, (title, img, cm) in zip(axes, cols):
        kwargs = {} if cm == 'gray' else dict(vmin=0, vmax=cmap.N - 1, interpolation='nearest')
        ax.imshow(img.T.numpy(), cmap=cm, origin='lower', **kwargs)
        ax.set_title(title, fontsize=9)
        ax.axis('off')
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
