# DSD on the stock DynUNet: the whole change is two keys, where the heads attach and the
# loss (plus custom_imports, already in the base). Heads live in model.network.dsd_heads; export with
# `python tools/export.py CKPT OUT --strip-prefix network.` for the stock DynUNet.
_base_ = './dynunet_1xb1-16e_demo-msd.py'

model = dict(
    dsd_taps=dict(preset='dynunet'),
    loss_dsd=dict(type='DSDLoss', temperature=3.0, alpha=1.0, strategy='straightforward'))
