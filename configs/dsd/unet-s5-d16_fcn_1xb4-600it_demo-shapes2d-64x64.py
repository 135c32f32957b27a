# Demo-size mmseg UNet (base 16 channels, BN) on the generated 2D shapes data
# (mmseg layout: img_dir/ann_dir PNGs). The DSD demo config inherits this one.
_base_ = 'mmseg::unet/unet-s5-d16_fcn_4xb4-40k_drive-64x64.py'
custom_imports = dict(imports=['plugins'], allow_failed_imports=False)

data_root = 'data/demo/shapes2d'
num_classes = 3
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    backbone=dict(base_channels=16, norm_cfg=norm_cfg),
    decode_head=dict(in_channels=16, channels=16, num_classes=num_classes, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=32, channels=16, num_classes=num_classes, norm_cfg=norm_cfg),
    test_cfg=dict(mode='whole'))

metainfo = dict(
    classes=('background', 'disk', 'bar'), palette=[[0, 0, 0], [220, 60, 60], [60, 120, 220]])
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    # per-sample seeds (run seed, round, index): a resumed run augments exactly as
    # an uninterrupted one, whatever mmengine's loader fast-forward draws
    dict(type='SampleSeeded', transforms=[dict(type='RandomFlip', prob=0.5)]),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
dataset = dict(
    type='BaseSegDataset',
    data_root=data_root,
    metainfo=metainfo,
    img_suffix='.png',
    seg_map_suffix='.png',
    reduce_zero_label=False)
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='SampleSeedInfiniteSampler', shuffle=True),
    dataset=dict(
        _delete_=True,
        **dataset,
        pipeline=train_pipeline,
        data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train')))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        _delete_=True,
        **dataset,
        pipeline=test_pipeline,
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val')))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mDice', 'mIoU'])
test_evaluator = val_evaluator

max_iters = 600
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(
    _delete_=True,
    type='NonFiniteSkipOptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-5))
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-5, power=0.9, begin=0, end=max_iters, by_epoch=False)
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=25, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters))
custom_hooks = [dict(type='RNGStateHook'), dict(type='NonFiniteGuardHook')]
randomness = dict(seed=0)
