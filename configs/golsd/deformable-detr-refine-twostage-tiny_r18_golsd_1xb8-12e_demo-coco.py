# The demo Deformable-DETR (two-stage, box refinement) with FDR + GO-LSD: the change
# of a user's config, the same as for the R-50 config (docs/golsd.md).
_base_ = './deformable-detr-refine-twostage-tiny_r18_1xb8-12e_demo-coco.py'

model = dict(
    type='GOLSDDeformableDETR',
    golsd=dict(reg_max=32, reg_scale=4.0, up=0.5, T=5.0),
    bbox_head=dict(
        type='GOLSDDeformableDETRHead',
        loss_fgl=dict(type='FGLLoss', loss_weight=0.15),
        loss_ddf=dict(type='DDFLoss', loss_weight=1.5),
        loss_cls=dict(
            type='VarifocalLoss',
            use_sigmoid=True,
            alpha=0.75,
            gamma=2.0,
            iou_weighted=True,
            loss_weight=1.0)))
