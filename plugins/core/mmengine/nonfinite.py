"""The non-finite guard for mmengine's Runner: no NaN or inf reaches the weights.

Two pieces, both in every plugin config::

    optim_wrapper = dict(type='NonFiniteSkipOptimWrapper', max_consecutive_skips=10, ...)
    custom_hooks = [dict(type='NonFiniteGuardHook')]

* :class:`NonFiniteSkipOptimWrapper` checks the loss and every gradient before
  the optimizer step (one fused reduction, one device sync). If anything is
  NaN or inf the step is skipped: the gradients are dropped, the optimizer
  (moments, step counts) is untouched (on every rank, if any rank saw it),
  the model's buffers (BatchNorm running
  statistics, which a NaN input poisons during the forward) are put back as
  they were before the forward, and after ``max_consecutive_skips`` skips in a
  row training stops with :class:`NonFiniteTrainingError`.
* :class:`NonFiniteGuardHook` names, for each skipped step, the first logged
  loss key that was non-finite (or the parameter whose gradient was), counts
  the skips (``skipped_steps`` in the message hub, saved with checkpoints),
  takes the skipped step's non-finite values out of the log's smoothing
  windows once they have been logged, and undoes the iteration-based learning-rate schedulers' step of that iteration,
  so a skipped step leaves the whole optimisation state as it was.

Logged loss values are the real ones: a NaN loss shows as ``nan``.
"""
from __future__ import annotations

import copy
import logging
import weakref
from typing import Any, List, Optional, Tuple

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.registry import HOOKS, OPTIM_WRAPPERS
from torch import Tensor, nn

from ..nonfinite import SkipCounter, all_finite, first_non_finite, first_non_finite_grad

__all__ = ['NonFiniteSkipOptimWrapper', 'NonFiniteGuardHook']


class NonFiniteSkipOptimWrapper(OptimWrapper):
    """mmengine's ``OptimWrapper`` that skips steps with non-finite values.

    Args:
        max_consecutive_skips (int): Stop after this many skipped steps in a
            row (default 10).
        *args, **kwargs: As ``OptimWrapper`` (``optimizer``,
            ``accumulative_counts``, ``clip_grad``).

    Raises:
        ValueError: If ``max_consecutive_skips < 1``.
        NonFiniteTrainingError: From :meth:`step`, on the
            ``max_consecutive_skips``-th skip in a row.
    """

    def __init__(self, *args, max_consecutive_skips: int = 10, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.skips = SkipCounter(max_consecutive_skips)
        #: why the last :meth:`step` was skipped (``None``: it was not)
        self.last_skip: Optional[str] = None
        #: set by :class:`NonFiniteGuardHook`, which logs the skip itself and
        #: restores these iteration-based schedulers after a skipped step
        self.quiet = False
        self.schedulers: list = []
        #: scheduler states and param-group settings at the last skipped step
        self.skip_state: Optional[Tuple[list, list]] = None
        self._loss_ok: Optional[Tensor] = None
        self._model_ref: Optional[weakref.ref] = None
        self._buffers: Optional[List[Tuple[Tensor, Tensor]]] = None

    def optim_context(self, model: nn.Module):
        """As the host's; also remembers the model's buffers (once per step)."""
        self._model_ref = weakref.ref(model)
        if self._buffers is None:
            self._buffers = [(b, b.detach().clone()) for b in model.buffers()]
        return super().optim_context(model)

    def backward(self, loss: Tensor, **kwargs) -> None:
        ok = torch.isfinite(loss.detach()).all()
        self._loss_ok = ok if self._loss_ok is None else self._loss_ok & ok
        super().backward(loss, **kwargs)

    def _params(self) -> List[nn.Parameter]:
        return [
            p for group in self.optimizer.param_groups for p in group['params']
            if p.grad is not None
        ]

    def _reason(self, loss_ok: bool) -> str:
        if not loss_ok:
            return 'non-finite loss'
        model = self._model_ref() if self._model_ref is not None else None
        named = (
            list(model.named_parameters())
            if model is not None else [(f'param {i}', p) for i, p in enumerate(self._params())])
        name = first_non_finite_grad(named)
        return f'non-finite gradient of {name!r}' if name else 'non-finite gradient'

    def step(self, **kwargs) -> None:
        """Clip and step, or skip when the loss or a gradient is non-finite."""
        params = self._params()
        ok = all_finite([p.grad for p in params])
        loss_ok = self._loss_ok
        self._loss_ok = None
        if loss_ok is not None:
            ok = ok.to(loss_ok.device) & loss_ok
        local_ok = ok
        ok = _all_ranks(ok, params)
        buffers, self._buffers = self._buffers, None
        if bool(ok):
            self.last_skip = None
            self.skips.ok()
            super().step(**kwargs)
            return
        with torch.no_grad():
            for buf, saved in buffers or []:
                buf.copy_(saved)
        # the schedulers step after this (ParamSchedulerHook); the guard hook
        # puts them and the learning rates back to this state
        self.skip_state = ([copy.deepcopy(s.state_dict()) for s in self.schedulers], [
            copy.deepcopy({
                k: v
                for k, v in g.items() if k != 'params'
            }) for g in self.optimizer.param_groups
        ])
        self.last_skip = (
            self._reason(loss_ok is None or bool(loss_ok))
            if not bool(local_ok) else 'a non-finite loss or gradient on another rank')
        if not self.quiet:
            print_log(
                f'step skipped: {self.last_skip} ({self.skips.total + 1} skipped so '
                f'far, {self.skips.consecutive + 1} in a row)',
                logger='current',
                level=logging.WARNING)
        self.skips.skip(self.last_skip)  # may raise NonFiniteTrainingError


def _all_ranks(ok: Tensor, params: List[nn.Parameter]) -> Tensor:
    """Under DDP, skip on every rank when any rank must: a rank that stepped
    alone would leave the replicas' weights different."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return ok
    device = params[0].device if params else ok.device
    if dist.get_backend() == 'nccl' and device.type != 'cuda':
        device = torch.device('cuda', torch.cuda.current_device())
    flag = ok.to(device=device, dtype=torch.float32).reshape(1)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return flag[0] > 0


def _guarded(runner) -> List[Tuple[Optional[str], NonFiniteSkipOptimWrapper]]:
    wrapper = runner.optim_wrapper
    items = wrapper.items() if isinstance(wrapper, OptimWrapperDict) else [(None, wrapper)]
    return [(name, w) for name, w in items if isinstance(w, NonFiniteSkipOptimWrapper)]


def _schedulers(runner, name: Optional[str]) -> list:
    scheds = getattr(runner, 'param_schedulers', None) or []
    if isinstance(scheds, dict):
        scheds = scheds.get(
            name, []) if name is not None else [s for group in scheds.values() for s in group]
    return list(scheds)


def _first_loss_key(outputs: Any) -> Optional[str]:
    """First non-finite logged key, the total ``loss`` only when no part is."""
    if not isinstance(outputs, dict):
        return None
    parts = {k: v for k, v in outputs.items() if k != 'loss'}
    return first_non_finite(parts) or first_non_finite(outputs)


def _drop_from_windows(runner, outputs: Any) -> None:
    """Take a skipped step's non-finite values out of the smoothing windows.

    The LoggerHook (priority 60) has already printed them for this iteration;
    left in its windows, one NaN would print as ``nan`` for the next
    ``window_size`` iterations although those trained normally.
    """
    if not isinstance(outputs, dict):
        return
    for key in list(outputs):
        if first_non_finite({key: outputs[key]}) is None:
            continue
        buf = runner.message_hub.log_scalars.get(f'train/{key}')
        history = getattr(buf, '_log_history', None)
        if history is not None and len(history) and not np.isfinite(history[-1]):
            buf._log_history = history[:-1]
            buf._count_history = buf._count_history[:-1]


class NonFiniteGuardHook(Hook):
    """Log, count and fully undo the steps that the guard wrapper skipped.

    Runs after ``ParamSchedulerHook`` (priority 70) and before
    ``CheckpointHook`` (90), so a checkpoint never holds a scheduler that
    advanced on a skipped step.

    Raises:
        TypeError: In ``before_train``, if no optimizer wrapper of the run is
            a :class:`NonFiniteSkipOptimWrapper` (the hook alone cannot
            stop a step).
    """

    priority = 80

    def __init__(self) -> None:
        #: ``(iteration, first non-finite loss key or None, reason)`` of the
        #: last 100 skipped steps
        self.skipped: List[Tuple[int, Optional[str], str]] = []
        #: skipped optimizer steps of the run (all wrappers)
        self.total = 0

    def before_train(self, runner) -> None:
        guarded = _guarded(runner)
        if not guarded:
            raise TypeError(
                f'NonFiniteGuardHook needs optim_wrapper type NonFiniteSkipOptimWrapper, '
                f'got {type(runner.optim_wrapper).__name__}: set '
                f"optim_wrapper=dict(type='NonFiniteSkipOptimWrapper', ...)")
        for name, wrapper in guarded:
            wrapper.quiet = True
            wrapper.schedulers = _schedulers(runner, name)
        # a resumed run continues the count saved in its checkpoint
        self.total = int(runner.message_hub.get_info('skipped_steps', 0) or 0)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        for name, wrapper in _guarded(runner):
            if wrapper.last_skip is None:
                continue
            key = _first_loss_key(outputs)
            what = f'loss key {key!r} was non-finite first' if key else 'no logged loss was non-finite'
            part = '' if name is None else f' of {name!r}'
            self.total += 1
            print_log(
                f'iteration {runner.iter + 1}: optimizer step{part} skipped, {what} '
                f'({wrapper.last_skip}); {self.total} skipped so far, '
                f'{wrapper.skips.consecutive} in a row',
                logger='current',
                level=logging.WARNING)
            runner.message_hub.update_info('skipped_steps', self.total)
            self.skipped = (self.skipped + [(runner.iter, key, wrapper.last_skip)])[-100:]
            if wrapper.skip_state is not None:
                scheds, groups = wrapper.skip_state
                for sched, state in zip(wrapper.schedulers, scheds):
                    sched.load_state_dict(state)
                for group, saved in zip(wrapper.optimizer.param_groups, groups):
                    group.update(saved)
            wrapper.last_skip = wrapper.skip_state = None
            _drop_from_windows(runner, outputs)


def _register() -> None:
    # here rather than in the package: importing this module first would
    # otherwise cycle through the adapter that mmengine's import triggers
    if NonFiniteSkipOptimWrapper.__name__ not in OPTIM_WRAPPERS.module_dict:
        OPTIM_WRAPPERS.register_module(module=NonFiniteSkipOptimWrapper)
    if NonFiniteGuardHook.__name__ not in HOOKS.module_dict:
        HOOKS.register_module(module=NonFiniteGuardHook)


_register()
