# Two-stage Deformable-DETR with box refinement, with FDR + GO-LSD (D-FINE).
# Compared with the upstream config the detector/head types, the GO-LSD settings
# and the classification loss (the reference's VarifocalLoss) change.
_base_ = 'mmdet::deformable_detr/deformable-detr-refine-twostage_r50_16xb2-50e_coco.py'

custom_imports = dict(imports=['plugins'], allow_failed_imports=False)

model = dict(
    type='GOLSDDeformableDETR',
    golsd=dict(reg_max=32, reg_scale=4.0, up=0.5, T=5.0),
    bbox_head=dict(
        type='GOLSDDeformableDETRHead',
        loss_cls=dict(
            type='VarifocalLoss',
            use_sigmoid=True,
            alpha=0.75,
            gamma=2.0,
            iou_weighted=True,
            loss_weight=1.0),
        loss_fgl=dict(type='FGLLoss', loss_weight=0.15),
        loss_ddf=dict(type='DDFLoss', loss_weight=1.5)))

# skip (and name) steps with a non-finite loss or gradient; see docs/core.md
optim_wrapper = dict(type='NonFiniteSkipOptimWrapper')
custom_hooks = [dict(type='NonFiniteGuardHook')]
