"""The λ ramp and the self-distillation EMA as mmengine hooks (MACIL-SD, arXiv:2207.05500)."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from ..functional import ema_momentum, ema_update_, lambda_ramp

__all__ = ['MACILLambdaHook', 'SelfDistillEMAHook']


def _model(runner):
    return getattr(runner.model, 'module', runner.model)


def _unwrap(module):
    """The network inside a per-submodule DDP wrapper."""
    return getattr(module, 'module', module)


@HOOKS.register_module()
class MACILLambdaHook(Hook):
    """Before each epoch ``e`` (0-based): ``λ_b = λ_n = min(cap, step·e)``."""

    priority = 'NORMAL'

    def __init__(self, step: float = 0.1, cap: float = 1.5) -> None:
        self.step = step
        self.cap = cap

    def before_train_epoch(self, runner) -> None:
        model = _model(runner)
        model.lambda_b = model.lambda_n = lambda_ramp(runner.epoch, self.step, self.cap)


@HOOKS.register_module()
class SelfDistillEMAHook(Hook):
    """After each training epoch ``e`` — after the LR schedulers stepped and
    before validation — ``θ_AV ← m_e·θ_AV + (1 − m_e)·θ_T`` with
    ``m_e = final + ½(base − final)(1 + cos(π·e/period))``.

    Args:
        student (str), teacher (str): Submodule names (``av``, ``teacher``).
        base_m, final_m, period: Momentum schedule (0.91, 1.0, 50).
        skip (Sequence[str]): Student names containing these are left alone.
        key_map (Mapping[str, str]): Student → teacher name prefixes.
    """

    # after ParamSchedulerHook (LOW = 70), before CheckpointHook (VERY_LOW = 90)
    priority = 75

    def __init__(self,
                 student: str = 'av',
                 teacher: str = 'teacher',
                 base_m: float = 0.91,
                 final_m: float = 1.0,
                 period: int = 50,
                 skip: Sequence[str] = ('fc_a', ),
                 key_map: Optional[Mapping[str, str]] = None) -> None:
        self.student = student
        self.teacher = teacher
        self.base_m, self.final_m, self.period = base_m, final_m, period
        self.skip = tuple(skip)
        self.key_map = dict({'att_mmil.fc': 'fc'} if key_map is None else key_map)

    def after_train_epoch(self, runner) -> None:
        model = _model(runner)
        teacher = getattr(model, self.teacher, None)
        if teacher is None:
            return
        m = ema_momentum(runner.epoch, self.base_m, self.final_m, self.period)
        n = ema_update_(
            _unwrap(getattr(model, self.student)).named_parameters(),
            dict(_unwrap(teacher).named_parameters()), m, self.skip, self.key_map)
        print_log(f'self-distillation EMA after epoch {runner.epoch}: m={m:.6f}, '
                  f'{n} tensors',
                  logger='current')
