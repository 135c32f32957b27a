# Fine-tuning the demo's small student on the generated SemanticKITTI tree
# (tools/data/make_demo_data.py semantickitti); model.pretrained=CKPT or None.
_base_ = './sr-unet34_finetune_1xb10-100e_semantickitti.py'

data_root = 'data/demo/semantickitti'
model = dict(
    pretrained=None,
    backbone=dict(
        layers=(1, 1, 1, 1, 1, 1, 1, 1), planes=(16, 16, 32, 32, 32, 16, 16, 16), init_dim=16))
dataset = dict(type='SemanticKITTIDataset', data_root=data_root)
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        dataset, split='train', label_every=1, pipeline=[dict(type='RandomRotateFlipCloud')]))
val_dataloader = dict(
    num_workers=0, persistent_workers=False, dataset=dict(dataset, split='val', augment=False))
test_dataloader = val_dataloader
max_epochs = 4
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min=0.0, by_epoch=True)]
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=max_epochs))
