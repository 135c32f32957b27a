# DSD on mmseg's 2D UNet (FCN head), from the upstream DRIVE config.
# Changes: the segmentor type, no auxiliary head (DSD supervises dec1 itself),
# and the plugin import. SyncBN stays as upstream (use BN in one process).
_base_ = 'mmseg::unet/unet-s5-d16_fcn_4xb4-40k_drive-64x64.py'
custom_imports = dict(imports=['plugins'], allow_failed_imports=False)

model = dict(
    type='DSDEncoderDecoder',
    auxiliary_head=None,
    loss_dsd=dict(type='DSDLoss', temperature=3.0, alpha=1.0, ignore_index=255))

# skip (and name) steps with a non-finite loss or gradient; see docs/core.md
optim_wrapper = dict(type='NonFiniteSkipOptimWrapper')
custom_hooks = [dict(type='NonFiniteGuardHook')]
