"""SLidR: pre-training on a nuScenes tree, linear probes, SemanticKITTI fine-tuning, the pairing picture."""
from __future__ import annotations

import os.path as osp
import time

from .common import DemoContext, find_scalars, markdown_table, read_scalars, train_and_eval

#: position of the stage in a full demo
ORDER = 4
SLIDR_PRETRAIN_EPOCHS = 12
SLIDR_PROBE_EPOCHS = 8
SLIDR_KITTI_EPOCHS = 4


def run(ctx: DemoContext) -> str:
    """SLidR pre-training on a synthetic nuScenes tree, then linear probes of the
    pre-trained and of a random-init student."""
    import math

    import numpy as np

    from plugins.testing.nuscenes import make_nuscenes_synthetic

    root = osp.join(ctx.data, 'nuscenes')
    if not osp.isfile(osp.join(root, 'v1.0-mini', 'lidarseg.json')):
        make_nuscenes_synthetic(root, samples_per_scene=4, seed=0)
    epochs = 2 if ctx.quick else SLIDR_PRETRAIN_EPOCHS
    pre_dir = osp.join(ctx.out, 'slidr_pretrain')
    t0 = time.time()
    ctx.run_tool([
        'tools/train.py', 'configs/slidr/slidr_tiny-unet_1xb2-8e_demo-nuscenes.py', '--work-dir',
        pre_dir, '--cfg-options', f'train_dataloader.dataset.data_root={root}',
        f'train_cfg.max_epochs={epochs}', f'param_scheduler.0.T_max={epochs}',
        f'default_hooks.checkpoint.interval={epochs}'
    ], 'slidr_pretrain.log', 'slidr: pre-train', epochs * 2)
    pre_s = time.time() - t0
    rows = [r for r in read_scalars(find_scalars(pre_dir)) if 'kept' in r]
    excess = [r['loss'] - math.log(r['kept']) for r in rows]
    half = max(1, len(excess) // 4)
    probe_epochs = 2 if ctx.quick else SLIDR_PROBE_EPOCHS
    opts = [f'{k}_dataloader.dataset.data_root={root}' for k in ('train', 'val', 'test')]
    opts += [
        f'train_cfg.max_epochs={probe_epochs}', f'train_cfg.val_interval={probe_epochs}',
        f'default_hooks.checkpoint.interval={probe_epochs}',
        f'param_scheduler.0.T_max={probe_epochs}'
    ]
    table_rows = []
    for label, name, pretrained in (('random init', 'slidr_probe_random', 'None'),
                                    ('SLidR pre-trained', 'slidr_probe_slidr',
                                     osp.join(pre_dir, f'epoch_{epochs}.pth'))):
        run = train_and_eval(ctx, name,
                             'configs/slidr/tiny-unet_linear-probe_1xb2-8e_demo-nuscenes.py',
                             opts + [f'model.pretrained={pretrained}'], probe_epochs, 2)
        m = run['metrics']
        table_rows.append([label, probe_epochs] + [
            m.get(f'lidarseg/{k}', float('nan'))
            for k in ('mIoU_present', 'IoU_driveable_surface', 'IoU_car', 'IoU_manmade',
                      'IoU_vegetation')
        ])
    table = markdown_table([
        'linear probe from', 'epochs', 'mIoU (present classes)', 'driveable surface', 'car',
        'manmade', 'vegetation'
    ], table_rows)
    kitti_table = _slidr_kitti(ctx, osp.join(pre_dir, f'epoch_{epochs}.pth'))
    picture = _slidr_picture(ctx, root)
    return '\n'.join([
        '## SLidR: image-to-lidar distillation', '',
        f'A synthetic nuScenes-lidarseg `v1.0-mini` tree ({root}; loaded by the official '
        'devkit): a 32-beam lidar ray-cast into cars, poles and bushes along a road, six '
        'cameras rendered from the labelled points, 4 keyframes in `mini_train`, 4 in '
        '`mini_val`. Pre-training: frozen random-init ResNet-50 teacher (no weights can be '
        'downloaded here), a small sparse U-Net student, superpixels from `slic_fast`, '
        f'{epochs} epochs ({pre_s:.0f} s). The InfoNCE loss minus its chance level (log of the '
        f'superpixels kept) went from {np.mean(excess[:half]):+.2f} (first quarter of the steps) '
        f'to {np.mean(excess[-half:]):+.2f} (last quarter). Then a linear probe (only the '
        'last layer trains, frozen batch norm) on the lidarseg labels, scored on all '
        '`mini_val` points; IoU of the four classes present.', '', table, '',
        'Fine-tuning on a synthetic SemanticKITTI tree (`dataset/sequences/XX/velodyne`, '
        '`labels`, `calib.txt`; 3 scans per training sequence, 08 for validation), from '
        'scratch and from the same pre-trained student:', '', kitti_table, '',
        f'![pairings]({osp.basename(picture)})', '',
        'The coloured points of the right panel are the "superpoints": the lidar points '
        'that project into each superpixel (`slidr_pairings.ply` holds them for a 3D viewer).', ''
    ])


def _slidr_kitti(ctx: DemoContext, pretrained: str) -> str:
    """Short SemanticKITTI fine-tunes: from scratch and from the pre-trained student."""
    from plugins.testing.semantickitti import make_semantickitti_synthetic

    root = osp.join(ctx.data, 'semantickitti')
    if not osp.isdir(osp.join(root, 'dataset', 'sequences', '08')):
        make_semantickitti_synthetic(root, scans_per_sequence=3, seed=0)
    epochs = 1 if ctx.quick else SLIDR_KITTI_EPOCHS
    opts = [f'{k}_dataloader.dataset.data_root={root}' for k in ('train', 'val', 'test')]
    opts += [
        f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
        f'default_hooks.checkpoint.interval={epochs}', f'param_scheduler.0.T_max={epochs}'
    ]
    rows = []
    for label, name, ckpt in (('from scratch', 'slidr_kitti_scratch', 'None'),
                              ('from the SLidR student', 'slidr_kitti_slidr', pretrained)):
        run = train_and_eval(ctx, name,
                             'configs/slidr/tiny-unet_finetune_1xb2-4e_demo-semantickitti.py',
                             opts + [f'model.pretrained={ckpt}'], epochs, 15)
        m = run['metrics']
        rows.append([label, epochs] + [
            m.get(f'lidarseg/{k}', float('nan'))
            for k in ('mIoU_present', 'IoU_road', 'IoU_sidewalk', 'IoU_car', 'IoU_building',
                      'IoU_vegetation')
        ])
    return markdown_table([
        'fine-tune from', 'epochs', 'mIoU (present classes)', 'road', 'sidewalk', 'car', 'building',
        'vegetation'
    ], rows)


def _slidr_picture(ctx: DemoContext, root: str) -> str:
    """Superpixels, paired points and their bird's-eye view for one camera."""
    import numpy as np
    import torch

    from plugins.slidr.geometry import cylindrical_voxelize
    from plugins.slidr.mmengine import NuScenesSLidRDataset
    from plugins.slidr.views import plot_pairings, slot_colours, write_cloud

    ds = NuScenesSLidRDataset(
        root, split='mini_val', crop=(225, 400), augment=False, superpixel_size=256)
    sample = ds.nusc.get('sample', ds.samples[0])
    lidar = ds.nusc.get('sample_data', sample['data']['LIDAR_TOP'])
    points = np.fromfile(osp.join(root, lidar['filename']), np.float32).reshape(-1, 5)
    item = ds[0]
    pairs = item['pairs'].numpy()
    cam0 = pairs[pairs[:, 1] == 0]
    image = item['images'][0].numpy().transpose(1, 2, 0)
    sp = item['superpixels'][0].numpy()
    slots = sp[cam0[:, 2], cam0[:, 3]]
    # pairings hold voxel rows; take each voxel's first point for the 3D view
    _, _, first = cylindrical_voxelize(torch.from_numpy(np.ascontiguousarray(points[:, :3])))
    xyz = points[first.numpy()[cam0[:, 0]], :3]
    write_cloud(osp.join(ctx.out, 'slidr_pairings.ply'), xyz, slot_colours(slots))
    return plot_pairings(image, sp, cam0[:, 2], cam0[:, 3], xyz, slots,
                         osp.join(ctx.out, 'slidr_pairings.png'),
                         'CAM_FRONT of a mini_val keyframe')
