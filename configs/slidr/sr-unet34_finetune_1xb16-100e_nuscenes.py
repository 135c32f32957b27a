# Lidar segmentation on nuScenes (16 classes + ignore 0) with the SR-UNet34C, from a
# SLidR pre-training checkpoint (model.pretrained) or from scratch (None): CE + Lovasz,
# SGD momentum 0.9 / dampening 0.1 / wd 1e-4, cosine, 100 epochs, batch 16, trunk lr
# 0.02 and head (final.) lr 2.0; train.label_every=100 keeps 1 % of the scenes.
_base_ = '../_base_/plugin_runtime.py'

data_root = 'data/nuscenes'
model = dict(
    type='SLidRSegmentor',
    num_classes=17,
    pretrained=None,
    linear_probe=False,
    lovasz=True,
    ignore_index=0,
    backbone=dict(
        in_channels=1,
        layers=(2, 3, 4, 6, 2, 2, 2, 2),
        planes=(32, 64, 128, 256, 256, 128, 96, 96),
        init_dim=32,
        momentum=0.02))
dataset = dict(type='NuScenesLidarSegDataset', data_root=data_root, version='v1.0-trainval')
train_dataloader = dict(
    batch_size=16,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='SampleSeedSampler', shuffle=True),  # per-sample seeds: exact resume
    collate_fn=dict(type='lidarseg_collate'),
    dataset=dict(
        dataset, split='train', label_every=1, pipeline=[dict(type='RandomRotateFlipCloud')]))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='lidarseg_collate'),
    dataset=dict(dataset, split='val', augment=False))
test_dataloader = val_dataloader
val_evaluator = dict(type='PointMIoUMetric', num_classes=17, ignore_index=0)
test_evaluator = val_evaluator

max_epochs = 100
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, dampening=0.1, weight_decay=1e-4),
    paramwise_cfg=dict(custom_keys={'backbone.final': dict(lr_mult=100.0)}))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min=0.0, by_epoch=True)]

default_hooks = dict(checkpoint=dict(interval=5, max_keep_ckpts=2))
randomness = dict(seed=0)
