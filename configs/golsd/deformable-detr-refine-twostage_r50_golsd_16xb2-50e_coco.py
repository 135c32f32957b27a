# Two-stage Deformable-DETR with box refinement, with FDR + GO-LSD (D-FINE).
# Compared with the upstream config only the detector/head types and the GO-LSD
# settings change.
_base_ = 'mmdet::deformable_detr/deformable-detr-refine-twostage_r50_16xb2-50e_coco.py'

custom_imports = dict(imports=['plugins'], allow_failed_imports=False)

model = dict(
    type='GOLSDDeformableDETR',
    golsd=dict(reg_max=32, reg_scale=4.0, up=0.5, T=5.0),
    bbox_head=dict(
        type='GOLSDDeformableDETRHead',
        loss_fgl=dict(loss_weight=0.15),
        loss_ddf=dict(loss_weight=1.5)))
