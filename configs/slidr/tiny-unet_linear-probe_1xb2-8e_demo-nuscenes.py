# Linear probe of the demo's small student on the generated nuScenes-mini tree
# (model.pretrained=None: the random-init baseline).
_base_ = './sr-unet34_linear-probe_1xb16-100e_nuscenes.py'

data_root = 'data/demo/nuscenes'
model = dict(
    pretrained=None,
    backbone=dict(
        layers=(1, 1, 1, 1, 1, 1, 1, 1), planes=(16, 16, 32, 32, 32, 16, 16, 16), init_dim=16))
dataset = dict(type='NuScenesLidarSegDataset', data_root=data_root, version='v1.0-mini')
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        dataset, split='mini_train', label_every=1, pipeline=[dict(type='RandomRotateFlipCloud')]))
val_dataloader = dict(
    num_workers=0, persistent_workers=False, dataset=dict(dataset, split='mini_val', augment=False))
test_dataloader = val_dataloader
max_epochs = 8
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min=0.0, by_epoch=True)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=max_epochs))
