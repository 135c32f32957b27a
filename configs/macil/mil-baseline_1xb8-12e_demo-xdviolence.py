# The same audio-visual network trained with top-k MIL only: no contrastive terms,
# no teacher, no self-distillation EMA.
_base_ = './macil-sd_1xb8-12e_demo-xdviolence.py'

model = dict(teacher=False, loss_contrastive=None)
optim_wrapper = dict(
    _delete_=True,
    constructor='SubmoduleOptimWrapperConstructor',
    type='NonFiniteSkipOptimWrapper',
    av=dict(optimizer=dict(type='Adam', lr=4e-4)))
param_scheduler = dict(
    _delete_=True, av=[dict(type='CosineAnnealingLR', T_max=60, eta_min=0.0, by_epoch=True)])
custom_hooks = [dict(type='RNGStateHook'), dict(type='NonFiniteGuardHook')]
