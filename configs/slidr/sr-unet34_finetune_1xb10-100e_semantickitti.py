# Fine-tuning on SemanticKITTI (19 classes + ignore 0): batch 10, trunk lr 0.05, head lr
# 2.0, 100 epochs; train.label_every=100 keeps 1 % of the sorted training scans.
_base_ = './sr-unet34_finetune_1xb16-100e_nuscenes.py'

data_root = 'data/semantickitti'
model = dict(num_classes=20)
dataset = dict(type='SemanticKITTIDataset', data_root=data_root)
# _delete_: the nuScenes base's dataset keys (version, ...) do not apply here
train_dataloader = dict(
    batch_size=10,
    dataset=dict(
        _delete_=True,
        **dataset,
        split='train',
        label_every=1,
        pipeline=[dict(type='RandomRotateFlipCloud')]))
val_dataloader = dict(dataset=dict(_delete_=True, **dataset, split='val', augment=False))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='PointMIoUMetric',
    num_classes=20,
    ignore_index=0,
    class_names=('ignore', 'car', 'bicycle', 'motorcycle', 'truck', 'other-vehicle', 'person',
                 'bicyclist', 'motorcyclist', 'road', 'parking', 'sidewalk', 'other-ground',
                 'building', 'fence', 'vegetation', 'trunk', 'terrain', 'pole', 'traffic-sign'))
test_evaluator = val_evaluator
optim_wrapper = dict(
    optimizer=dict(lr=0.05), paramwise_cfg=dict(custom_keys={'backbone.final': dict(lr_mult=40.0)}))
