"""The non-finite guard: detection, skipping, counting, scheduler, Runner."""
from collections import OrderedDict

import pytest
import torch
from torch import nn

from plugins.core.nonfinite import (NonFiniteTrainingError, SkipCounter, all_finite,
                                    first_non_finite, first_non_finite_grad)

NAN, INF = float('nan'), float('inf')


def test_all_finite_values():
    assert bool(all_finite([torch.ones(3), torch.zeros(2, 2)]))
    assert bool(all_finite([]))
    assert bool(all_finite([torch.empty(0)]))
    assert bool(all_finite([torch.full((4, ), 3e38)]))  # huge but finite
    assert bool(
        all_finite([torch.ones(2, dtype=torch.bfloat16),
                    torch.ones(2, dtype=torch.float64)]))
    for bad in (NAN, INF, -INF):
        t = torch.ones(5)
        t[3] = bad
        assert not bool(all_finite([torch.ones(2), t, torch.ones(1)]))


def test_first_non_finite_keeps_the_mapping_order():
    values = OrderedDict(loss_cls=0.5, loss_fgl=NAN, loss_bbox=torch.tensor(INF), n=3)
    assert first_non_finite(values) == 'loss_fgl'
    del values['loss_fgl']
    assert first_non_finite(values) == 'loss_bbox'
    assert first_non_finite(dict(a=1.0, b=torch.tensor([1.0, 2.0]), c=torch.tensor(2))) is None


def test_first_non_finite_grad_names_the_parameter():
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    net(torch.ones(1, 2)).sum().backward()
    assert first_non_finite_grad(net.named_parameters()) is None
    net[1].bias.grad[0] = NAN
    assert first_non_finite_grad(net.named_parameters()) == '1.bias'


def test_skip_counter_stops_after_consecutive_skips():
    counter = SkipCounter(3)
    counter.skip('a')
    counter.skip('b')
    counter.ok()
    counter.skip('c')
    counter.skip('d')
    assert (counter.total, counter.consecutive) == (4, 2)
    with pytest.raises(NonFiniteTrainingError, match='3 consecutive.*last: e'):
        counter.skip('e')
    with pytest.raises(ValueError, match='max_consecutive_skips must be'):
        SkipCounter(0)


class _Toy(nn.Module):
    """A linear model with a BatchNorm; ``x`` may carry NaN."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.bn = nn.BatchNorm1d(3)
        self.fc = nn.Linear(3, 1)

    def forward(self, x):
        return self.fc(self.bn(x))


def _wrapper(model, **kw):
    from plugins.core.mmengine.nonfinite import NonFiniteSkipOptimWrapper
    return NonFiniteSkipOptimWrapper(optimizer=torch.optim.AdamW(model.parameters(), lr=0.1), **kw)


def _step(model, wrapper, loss_fn):
    with wrapper.optim_context(model):
        loss = loss_fn(model)
    wrapper.update_params(loss)
    return loss


def test_wrapper_skips_a_nan_loss_and_restores_the_buffers():
    model = _Toy()
    wrapper = _wrapper(model)
    x = torch.randn(4, 3)
    _step(model, wrapper, lambda m: m(x).pow(2).mean())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    opt = {k: v['exp_avg'].clone() for k, v in enumerate(wrapper.optimizer.state.values())}
    bad = x.clone()
    bad[0, 1] = NAN
    _step(model, wrapper, lambda m: m(bad).pow(2).mean())
    assert wrapper.last_skip == 'non-finite loss'
    for k, v in model.state_dict().items():  # running stats too, not only weights
        assert torch.equal(v, state[k]), k
    for k, v in enumerate(wrapper.optimizer.state.values()):
        assert torch.equal(v['exp_avg'], opt[k]) and int(v['step']) == 1
    assert all(p.grad is None for p in model.parameters())
    _step(model, wrapper, lambda m: m(x).pow(2).mean())
    assert wrapper.last_skip is None and wrapper.skips.total == 1
    assert not torch.equal(model.fc.weight, state['fc.weight'])


def test_wrapper_names_the_parameter_of_a_non_finite_gradient():
    model = _Toy()
    wrapper = _wrapper(model, clip_grad=dict(max_norm=1.0))
    # finite value (sqrt 0 = 0), infinite gradient (1 / (2 sqrt 0)) for fc.bias only
    _step(model, wrapper, lambda m:
          (m.fc.bias - m.fc.bias.detach()).sqrt().sum() + m(torch.randn(4, 3)).mean())
    assert wrapper.last_skip == "non-finite gradient of 'fc.bias'"


def test_wrapper_stops_after_too_many_skips():
    model = _Toy()
    wrapper = _wrapper(model, max_consecutive_skips=2)
    nan_loss = lambda m: m(torch.randn(4, 3)).mean() * NAN  # noqa: E731
    _step(model, wrapper, nan_loss)
    with pytest.raises(NonFiniteTrainingError, match='2 consecutive'):
        _step(model, wrapper, nan_loss)


def test_hook_refuses_an_unguarded_wrapper():
    from types import SimpleNamespace

    from mmengine.optim import OptimWrapper

    from plugins.core.mmengine.nonfinite import NonFiniteGuardHook
    model = _Toy()
    runner = SimpleNamespace(optim_wrapper=OptimWrapper(torch.optim.SGD(model.parameters(), 0.1)))
    with pytest.raises(TypeError, match="type='NonFiniteSkipOptimWrapper'"):
        NonFiniteGuardHook().before_train(runner)


def test_submodule_constructor_takes_a_default_wrapper_type():
    import plugins.core.mmengine  # noqa: F401  (registers the wrapper)
    from plugins.core.mmengine.nonfinite import NonFiniteSkipOptimWrapper
    from plugins.core.optim import SubmoduleOptimWrapperConstructor
    model = nn.Module()
    model.a, model.b = nn.Linear(2, 2), nn.Linear(2, 2)
    wrappers = SubmoduleOptimWrapperConstructor(
        dict(
            type='NonFiniteSkipOptimWrapper',
            a=dict(optimizer=dict(type='SGD', lr=0.1)),
            b=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1))))(
                model)
    assert isinstance(wrappers['a'], NonFiniteSkipOptimWrapper)
    assert not isinstance(wrappers['b'], NonFiniteSkipOptimWrapper)
    with pytest.raises(ValueError, match='one entry per submodule'):
        SubmoduleOptimWrapperConstructor(dict(type='NonFiniteSkipOptimWrapper'))


def _runner_model():
    """An mmengine model on :class:`_Toy` with two loss keys."""
    from mmengine.model import BaseModel

    class Model(BaseModel):

        def __init__(self):
            super().__init__()
            self.net = _Toy()

        def forward(self, x, y, mode='tensor'):
            pred = self.net(x).squeeze(1)
            if mode == 'loss':
                return dict(loss_mse=(pred - y).pow(2).mean(), loss_l1=(pred - y).abs().mean())
            return pred

    return Model()


class _Data(torch.utils.data.Dataset):

    def __init__(self, nan_at):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(32, 3, generator=g), torch.randn(32, generator=g)
        if nan_at is not None:
            self.x[nan_at, 0] = NAN

    def __len__(self):
        return 32

    def __getitem__(self, i):
        return dict(x=self.x[i], y=self.y[i])


SCHEDULER = dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=8)


def _run(tmp_path, name, nan_at, monkeypatch, messages):
    from mmengine.runner import Runner

    import plugins.core.mmengine  # noqa: F401
    import plugins.core.mmengine.nonfinite as guard
    monkeypatch.setattr(guard, 'print_log', lambda msg, **kw: messages.append(msg))
    from mmengine.runner import log_processor
    real = log_processor.LogProcessor.get_log_after_iter

    def record(self, *args, **kwargs):
        tag, line = real(self, *args, **kwargs)
        messages.append(line)
        return tag, line

    monkeypatch.setattr(log_processor.LogProcessor, 'get_log_after_iter', record)
    runner = Runner(
        model=_runner_model(),
        work_dir=str(tmp_path / name),
        train_dataloader=dict(
            dataset=_Data(nan_at),
            batch_size=4,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=False, max_iters=8),
        optim_wrapper=dict(
            type='NonFiniteSkipOptimWrapper', optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        param_scheduler=[SCHEDULER],
        custom_hooks=[dict(type='NonFiniteGuardHook')],
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=4, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        experiment_name=name)
    runner.train()
    return runner


def test_runner_skips_the_nan_batch_and_keeps_the_schedule(tmp_path, monkeypatch):
    messages = []
    runner = _run(tmp_path, 'nan', 9, monkeypatch, messages)  # sample 9: batch 2 (iteration 3)
    assert runner.message_hub.get_info('skipped_steps') == 1
    assert any("iteration 3: optimizer step skipped, loss key 'loss_mse' was non-finite first" in m
               for m in messages), messages
    hook = next(h for h in runner.hooks if type(h).__name__ == 'NonFiniteGuardHook')
    assert hook.skipped == [(2, 'loss_mse', 'non-finite loss')]
    assert all(torch.isfinite(p).all() for p in runner.model.state_dict().values())
    # 8 iterations, one skipped: the schedule advanced 7 times
    from mmengine.optim.scheduler import LinearLR
    reference = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    ref_sched = LinearLR(reference, start_factor=0.1, by_epoch=False, begin=0, end=8)
    for _ in range(7):
        ref_sched.step()
    assert runner.param_schedulers[0].last_step == ref_sched.last_step
    lr = runner.optim_wrapper.optimizer.param_groups[0]['lr']
    assert lr == reference.param_groups[0]['lr'] != 0.1
    lines = [m for m in messages if 'Epoch(train)' in m]
    assert 'loss_mse: nan' in lines[2] and 'loss_mse: nan' not in lines[3]  # real, then clean


def _two_rank_worker(rank, port, out):
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=2)
    try:
        model = _Toy()
        wrapper = _wrapper(model)
        before = model.fc.weight.detach().clone()

        def loss(m):
            value = m(torch.ones(4, 3) * (rank + 1)).mean()
            # rank 0 only: a NaN in a term without gradient (finite gradients)
            return value + (torch.tensor(NAN) if rank == 0 else torch.tensor(0.0))

        _step(model, wrapper, loss)
        out[rank] = (wrapper.last_skip, torch.equal(before, model.fc.weight))
    finally:
        dist.destroy_process_group()


def test_every_rank_skips_when_one_rank_has_a_non_finite_loss():
    import socket

    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_two_rank_worker, args=(port, out), nprocs=2, join=True)
    assert out[0] == ('non-finite loss', True)
    assert out[1] == ('a non-finite loss or gradient on another rank', True)
