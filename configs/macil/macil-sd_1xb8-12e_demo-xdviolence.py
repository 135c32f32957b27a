# MACIL-SD on the generated XD-Violence-format demo set (tools/data/make_demo_data.py xdv).
_base_ = './macil-sd_1xb128-50e_xdviolence.py'

data_root = 'data/demo/xdv'
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, max_len=64))
test_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
test_evaluator = dict(gt_file=f'{data_root}/gt.npy')
default_hooks = dict(logger=dict(interval=3), checkpoint=dict(interval=max_epochs))
