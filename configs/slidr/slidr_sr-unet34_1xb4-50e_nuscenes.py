# SLidR pre-training on nuScenes (reference protocol): frozen ResNet-50 teacher (MoCo-v2
# weights via model.teacher_weights), SR-UNet34C student, superpixels of 150 slots,
# tau 0.07, 224x416 crops, SGD lr 0.5 (momentum 0.9, dampening 0.1, wd 1e-4), cosine
# annealing per epoch, 50 epochs, batch 4 scenes.
#   python tools/data/make_superpixels.py --list cams.txt --out superpixels/slic_150
#   python tools/train.py configs/slidr/slidr_sr-unet34_1xb4-50e_nuscenes.py
_base_ = '../_base_/plugin_runtime.py'

data_root = 'data/nuscenes'
model = dict(
    type='SLidRPretrainer',
    dim=64,
    superpixel_size=150,
    teacher_weights=None,
    loss_nce=dict(
        type='SuperpixelNCELoss', temperature=0.07, kept_rule='first_channel', loss_weight=1.0),
    student=dict(
        in_channels=1,
        layers=(2, 3, 4, 6, 2, 2, 2, 2),
        planes=(32, 64, 128, 256, 256, 128, 96, 96),
        init_dim=32,
        momentum=0.05))
# the paper's augmentations, in the order of their draws (each from the sample's own seed)
train_pipeline = [
    dict(type='RandomCameraOrder'),
    dict(type='RandomRotateFlipCloud'),
    dict(type='DropCuboids', min_pairs=1024),
    dict(type='RandomResizedCropFlipImages', size=(224, 416), min_pairs=1024, flip_prob=0.5),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='SampleSeedSampler', shuffle=True),  # per-sample seeds: exact resume
    collate_fn=dict(type='slidr_collate'),
    dataset=dict(
        type='NuScenesSLidRDataset',
        data_root=data_root,
        version='v1.0-trainval',
        split='train',
        superpixel_root='superpixels/slic_150',
        superpixel_size=150,
        pipeline=train_pipeline))
val_dataloader = None
val_cfg = None
val_evaluator = None

max_epochs = 50
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.5, momentum=0.9, dampening=0.1, weight_decay=1e-4))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min=0.0, by_epoch=True)]

default_hooks = dict(checkpoint=dict(max_keep_ckpts=3))
randomness = dict(seed=0)
