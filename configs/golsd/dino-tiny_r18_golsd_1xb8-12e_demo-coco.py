# The demo DINO with FDR + GO-LSD: the change of a user's config. Classification
# switches to the reference's VarifocalLoss (IoU targets): the box losses use the
# one-to-many GO matches, and with Focal scores the extra well-placed queries
# outrank true positives (docs/golsd.md, "Why VarifocalLoss").
_base_ = './dino-tiny_r18_1xb8-12e_demo-coco.py'

model = dict(
    type='GOLSDDINO',
    golsd=dict(reg_max=32, reg_scale=4.0, up=0.5, T=5.0),
    bbox_head=dict(
        type='GOLSDDINOHead',
        loss_fgl=dict(type='FGLLoss', loss_weight=0.15),
        loss_ddf=dict(type='DDFLoss', loss_weight=1.5),
        loss_cls=dict(
            type='VarifocalLoss',
            use_sigmoid=True,
            alpha=0.75,
            gamma=2.0,
            iou_weighted=True,
            loss_weight=1.0)))
