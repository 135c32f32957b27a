# Linear probing: only the final 1x1 layer trains, the network stays in eval mode
# (frozen batch norm), single lr 0.05, 100 % of the labels.
_base_ = './sr-unet34_finetune_1xb16-100e_nuscenes.py'

model = dict(
    linear_probe=True, pretrained='work_dirs/slidr_sr-unet34_1xb4-50e_nuscenes/epoch_50.pth')
optim_wrapper = dict(optimizer=dict(lr=0.05), paramwise_cfg=dict(_delete_=True))
