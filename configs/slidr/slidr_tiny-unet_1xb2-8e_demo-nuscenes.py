# SLidR pre-training on the generated nuScenes-mini tree (tools/data/make_demo_data.py
# nuscenes): a small sparse U-Net, 96x176 crops, superpixels computed on the fly.
_base_ = './slidr_sr-unet34_1xb4-50e_nuscenes.py'

data_root = 'data/demo/nuscenes'
model = dict(
    dim=16,
    student=dict(
        layers=(1, 1, 1, 1, 1, 1, 1, 1), planes=(16, 16, 32, 32, 32, 16, 16, 16), init_dim=16))
train_pipeline = [
    dict(type='RandomCameraOrder'),
    dict(type='RandomRotateFlipCloud'),
    dict(type='DropCuboids', min_pairs=64),
    dict(type='RandomResizedCropFlipImages', size=(96, 176), min_pairs=64),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        version='v1.0-mini',
        split='mini_train',
        superpixel_root=None,
        pipeline=train_pipeline))
max_epochs = 8
train_cfg = dict(max_epochs=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=0.05))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min=0.0, by_epoch=True)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=max_epochs))
