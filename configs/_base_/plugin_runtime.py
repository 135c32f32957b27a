# Runtime shared by the plugin configs that do not inherit a host library's base
# (mmengine Runner, epoch-based): hooks, random-state checkpointing, gloo for CPU.
custom_imports = dict(imports=['plugins'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1),
    sampler_seed=dict(type='DistSamplerSeedHook'))
# skip (and name) steps with a non-finite loss or gradient; see docs/core.md
optim_wrapper = dict(type='NonFiniteSkipOptimWrapper')
custom_hooks = [dict(type='RNGStateHook'), dict(type='NonFiniteGuardHook')]
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
log_processor = dict(by_epoch=True)
# Logged scalars go to <work_dir>/<timestamp>/vis_data/scalars.json. For TensorBoard too
# (the project's `tensorboard` extra, installed by tools/env.sh):
#   --cfg-options "visualizer.vis_backends=[dict(type='LocalVisBackend'),dict(type='TensorboardVisBackend')]"
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends, name='visualizer')
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
