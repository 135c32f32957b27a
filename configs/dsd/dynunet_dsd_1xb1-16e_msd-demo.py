# DSD on the stock DynUNet: the whole change is the `dsd` key (plus custom_imports,
# already in the base). Heads live in model.network.dsd_heads; export with
# `python tools/export.py CKPT OUT --strip-prefix network.` for the stock DynUNet.
_base_ = './dynunet_1xb1-16e_msd-demo.py'

model = dict(dsd=dict(preset='dynunet', temperature=3.0, alpha=1.0, mode='straightforward'))
