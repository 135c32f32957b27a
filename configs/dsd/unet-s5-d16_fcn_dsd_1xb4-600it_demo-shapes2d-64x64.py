# The demo UNet with DSD: the three-line change.
_base_ = './unet-s5-d16_fcn_1xb4-600it_demo-shapes2d-64x64.py'

model = dict(
    type='DSDEncoderDecoder',
    auxiliary_head=None,
    loss_dsd=dict(type='DSDLoss', temperature=3.0, alpha=1.0))
