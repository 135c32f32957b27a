"""Drive the non-finite guard as mmengine's train loop does, without a Runner.

:func:`check_guard` runs one bad batch and one clean batch through
``model.train_step`` with the guard wrapper and hook, in the loop's order
(``before_train_iter``, ``train_step``, ``after_train_iter``), and asserts what
the guard promises: after the bad batch the parameters, buffers and optimizer
state are exactly as before, the skip is recorded with the first non-finite
loss key, and the clean batch then trains with finite values.
"""
import copy
from types import SimpleNamespace

import torch

__all__ = ['check_guard']


def _opt_state(wrappers):
    return [copy.deepcopy(w.optimizer.state_dict()) for w in wrappers]


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def check_guard(model, optim_wrapper, bad_batch, clean_batch, messages=None):
    """Returns the first non-finite loss key of the bad batch.

    Args:
        messages (list, optional): Filled by a patched ``print_log``; when
            given, the skip message must name the key.
    """
    from mmengine.logging import MessageHub
    from mmengine.optim import OptimWrapperDict

    from plugins.core.mmengine.nonfinite import NonFiniteGuardHook
    wrappers = (
        list(optim_wrapper.values())
        if isinstance(optim_wrapper, OptimWrapperDict) else [optim_wrapper])
    hook = NonFiniteGuardHook()
    runner = SimpleNamespace(
        optim_wrapper=optim_wrapper,
        param_schedulers=[],
        iter=0,
        message_hub=MessageHub.get_instance(f'guard-{id(model)}'))
    hook.before_train(runner)
    model.train()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt_before = _opt_state(wrappers)

    hook.before_train_iter(runner, 0, bad_batch)
    out = model.train_step(bad_batch, optim_wrapper)
    hook.after_train_iter(runner, 0, bad_batch, out)
    skipped = len(hook.skipped)
    assert skipped >= 1, 'the bad batch was not skipped'
    it, key, reason = hook.skipped[0]
    assert it == 0 and key is not None, (key, reason)
    value = out[key]
    value = value.item() if isinstance(value, torch.Tensor) else value
    assert value != value or abs(value) == float('inf'), f'{key} logged as {value}'
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, f'a skipped step changed {changed[:5]}'
    assert _equal(opt_before, _opt_state(wrappers)), 'a skipped step changed the optimizer'
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    assert runner.message_hub.get_info('skipped_steps') == len(hook.skipped)
    if messages is not None:
        assert any(repr(key) in m for m in messages), messages

    runner.iter = 1
    hook.before_train_iter(runner, 1, clean_batch)
    out = model.train_step(clean_batch, optim_wrapper)
    hook.after_train_iter(runner, 1, clean_batch, out)
    assert len(hook.skipped) == skipped and all(w.skips.consecutive == 0 for w in wrappers)
    logged = {
        k: float(torch.as_tensor(v).detach())
        for k, v in out.items()
        if isinstance(v, (float, int, torch.Tensor)) and torch.as_tensor(v).numel() == 1
    }
    assert all(v == v and abs(v) != float('inf') for v in logged.values()), logged
    after = model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), 'the clean step did not train'
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    return key
