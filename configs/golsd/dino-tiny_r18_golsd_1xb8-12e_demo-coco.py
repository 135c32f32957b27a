# The demo DINO with FDR + GO-LSD: the three-line change of a user's config.
_base_ = './dino-tiny_r18_1xb8-12e_demo-coco.py'

model = dict(type='GOLSDDINO', golsd=dict(reg_max=32, reg_scale=4.0, up=0.5, T=5.0),
             bbox_head=dict(type='GOLSDDINOHead', loss_fgl=dict(loss_weight=0.15),
                            loss_ddf=dict(loss_weight=1.5)))
