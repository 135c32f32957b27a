# A stock mmdet RetinaNet (ResNet-18 + FPN), trained from scratch on the
# embedded COCO-format shapes data (tools/data/make_demo_data.py coco) at
# 128x128, small enough to train on a CPU in about a minute.
_base_ = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'

custom_imports = dict(imports=['plugins'], allow_failed_imports=False)

data_root = 'data/demo/coco/'
metainfo = dict(classes=('square', 'disc'), palette=[(220, 20, 60), (0, 128, 255)])
img_scale = (128, 128)

model = dict(
    backbone=dict(init_cfg=None, norm_eval=False, frozen_stages=-1),
    bbox_head=dict(num_classes=2, stacked_convs=2, feat_channels=128))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

max_epochs = 8
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=24),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[6], gamma=0.1),
]
optim_wrapper = dict(
    type='NonFiniteSkipOptimWrapper', optimizer=dict(lr=0.02), clip_grad=dict(max_norm=10))

default_hooks = dict(
    logger=dict(interval=4),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=2),
    visualization=dict(draw=False))
custom_hooks = [dict(type='RNGStateHook'), dict(type='NonFiniteGuardHook')]
randomness = dict(seed=0, deterministic=True)
auto_scale_lr = dict(enable=False, base_batch_size=8)
