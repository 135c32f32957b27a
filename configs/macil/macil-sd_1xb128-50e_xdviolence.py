# MACIL-SD on XD-Violence features (I3D RGB + VGGish), the reference protocol:
# two Adam optimizers (AV 4e-4, teacher 8e-5), cosine annealing T_max 60 stepped per
# epoch, 50 epochs, batch 128 crops, lambda ramp, per-epoch self-distillation EMA.
#   python tools/train.py configs/macil/macil-sd_1xb128-50e_xdviolence.py
_base_ = '../_base_/plugin_runtime.py'

data_root = 'data/xd-violence'
model = dict(
    type='MACILSD',
    teacher=True,
    loss_mil=dict(type='TopKMILLoss'),
    loss_contrastive=dict(
        type='SemiBagContrastiveLoss', temperature=0.1, bag_threshold=0.5, upstream_rep_swap=True))

train_dataloader = dict(
    batch_size=128,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='SampleSeedSampler', shuffle=True),  # per-sample seeds: exact resume
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='XDViolenceDataset', data_root=data_root, split='train', max_len=200))
# one test video (5 crops, full length) per sample; the order is the test list's
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='xdv_test_collate'),
    dataset=dict(type='XDViolenceDataset', data_root=data_root, split='test'))
test_evaluator = dict(type='FrameAPMetric', gt_file=f'{data_root}/gt.npy')
# The reference evaluates on the test set every epoch and keeps the best; here the
# test set is scored once at the end (tools/test.py): select on a validation split
# carved from the training list if you need model selection.
val_dataloader = None
val_evaluator = None
val_cfg = None
test_cfg = dict(type='TestLoop')

max_epochs = 50
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
optim_wrapper = dict(
    constructor='SubmoduleOptimWrapperConstructor',
    av=dict(optimizer=dict(type='Adam', lr=4e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)),
    teacher=dict(
        optimizer=dict(type='Adam', lr=8e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)))
param_scheduler = dict(
    av=[dict(type='CosineAnnealingLR', T_max=60, eta_min=0.0, by_epoch=True)],
    teacher=[dict(type='CosineAnnealingLR', T_max=60, eta_min=0.0, by_epoch=True)])

default_hooks = dict(logger=dict(interval=20), checkpoint=dict(max_keep_ckpts=3))
custom_hooks = [
    dict(type='MACILLambdaHook', step=0.1, cap=1.5),
    dict(
        type='SelfDistillEMAHook',
        base_m=0.91,
        final_m=1.0,
        period=50,
        skip=('fc_a', ),
        key_map={'att_mmil.fc': 'fc'}),
    dict(type='RNGStateHook'),
    dict(type='NonFiniteGuardHook'),
]
# two networks, two optimizers: each submodule gets its own DDP wrapper, and the
# unused reference blocks (kept for the released key layout) need find_unused_parameters
model_wrapper_cfg = dict(
    type='MMSeparateDistributedDataParallel', broadcast_buffers=False, find_unused_parameters=True)
randomness = dict(seed=2333, deterministic=False)
