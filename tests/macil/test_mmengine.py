"""MACIL-SD on mmengine: two-optimizer train step, hooks, prediction, metric."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip('mmengine')

from plugins.macil.functional import ema_momentum
from plugins.macil.metrics import pr_auc, step_ap


def _model(**kw):
    import plugins  # noqa: F401
    from plugins.macil.mmengine import MACILSD
    torch.manual_seed(0)
    return MACILSD(**kw)


def _wrappers(model):
    from plugins.core.optim import SubmoduleOptimWrapperConstructor
    cfg = {'av': dict(optimizer=dict(type='Adam', lr=1e-3))}
    if model.teacher is not None:
        cfg['teacher'] = dict(optimizer=dict(type='Adam', lr=1e-3))
    return SubmoduleOptimWrapperConstructor(cfg)(model)


def _batch(b=4, t=20):
    torch.manual_seed(1)
    visual = torch.rand(b, t, 1024)
    visual[1, 15:] = 0.0
    return dict(
        visual=visual, audio=torch.randn(b, t, 128), labels=torch.tensor([1.0, 0.0, 1.0, 0.0])[:b])


def test_train_step_updates_both_networks_separately():
    model = _model()
    model.lambda_b = model.lambda_n = 1.0
    wrappers = _wrappers(model)
    av0 = model.av.fc_a.weight.detach().clone()
    t0 = model.teacher.fc.weight.detach().clone()
    logs = model.train_step(_batch(), wrappers)
    assert {'loss', 'mil', 'teacher_mil', 'lambda', 'cma_a2v_a2b'} <= set(logs)
    assert not torch.equal(av0, model.av.fc_a.weight) and not torch.equal(
        t0, model.teacher.fc.weight)
    # the teacher's loss is logged apart and is not part of `loss`
    eval_logs = model.eval()(**_batch(), mode='loss')
    assert 'teacher_mil' in eval_logs and [k for k in eval_logs if 'loss' in k] == ['loss']


def test_masked_padding_option_trains_both_networks():
    model = _model(network=dict(mask_padding=True))
    assert model.av.mask_padding and model.teacher.mask_padding
    model.lambda_b = model.lambda_n = 1.0
    logs = model.train_step(_batch(), _wrappers(model))
    assert all(torch.isfinite(v).all() for v in logs.values())
    reference = _model()
    reference.load_state_dict(_model(network=dict(mask_padding=True)).state_dict())
    a = _model(network=dict(mask_padding=True)).eval()(**_batch(), mode='loss')
    b = reference.eval()(**_batch(), mode='loss')
    assert a['mil'] != b['mil']  # sample 1 is padded: its scores change


def test_baseline_is_plain_mil_and_needs_only_an_av_optimizer():
    model = _model(teacher=False, loss_contrastive=None)
    logs = model.train_step(_batch(), _wrappers(model))
    assert set(logs) == {'loss', 'mil', 'lambda'} and torch.equal(logs['loss'], logs['mil'])
    from mmengine.optim import OptimWrapper
    with pytest.raises(TypeError, match="SubmoduleOptimWrapperConstructor"):
        model.train_step(_batch(), OptimWrapper(torch.optim.Adam(model.parameters())))


def test_bad_inputs_are_named():
    model = _model()
    batch = _batch()
    batch['visual'][2] = 0.0
    with pytest.raises(ValueError, match=r'samples \[2\] have all-zero visual'):
        model(**batch, mode='loss')
    with pytest.raises(ValueError, match='must share batch and length'):
        model(batch['visual'], batch['audio'][:, :5], batch['labels'], mode='loss')


def test_predict_is_the_crop_mean_of_snippet_probabilities():
    model = _model().eval()
    v, a = torch.rand(5, 9, 1024), torch.randn(1, 9, 128).expand(5, 9, 128)
    with torch.no_grad():
        out = model([v], [a], [torch.tensor(1.0)], [torch.tensor(0)], mode='predict')
        want = torch.sigmoid(model.av(v, a)['logits']).mean(0)
    assert out[0]['scores'].shape == (9, )
    torch.testing.assert_close(out[0]['scores'], want)


def test_lambda_and_ema_hooks():
    from plugins.macil.mmengine import MACILLambdaHook, SelfDistillEMAHook
    model = _model()
    runner = SimpleNamespace(model=model, epoch=7)
    MACILLambdaHook().before_train_epoch(runner)
    assert model.lambda_b == model.lambda_n == pytest.approx(0.7)
    before = model.av.fc_v.weight.detach().clone()
    fc_a = model.av.fc_a.weight.detach().clone()
    SelfDistillEMAHook().after_train_epoch(runner)
    m = ema_momentum(7)
    want = before * m + model.teacher.fc_v.weight.detach() * (1.0 - m)
    assert torch.equal(model.av.fc_v.weight, want)
    assert torch.equal(model.av.fc_a.weight, fc_a)
    assert SelfDistillEMAHook.priority == 75  # after the LR schedulers (70), before saving


def test_metric_orders_videos_expands_frames_and_checks_length(tmp_path):
    from plugins.macil.mmengine import FrameAPMetric
    gt = np.array([0, 0, 0, 0] * 4 + [1] * 16 + [0] * 16, np.float32)  # videos of 1 and 2 snippets
    np.save(tmp_path / 'gt.npy', gt)
    metric = FrameAPMetric(str(tmp_path / 'gt.npy'), dump_scores=str(tmp_path / 's.npy'))
    metric.process(None, [dict(index=torch.tensor(1), scores=torch.tensor([0.9, 0.3]))])
    metric.process(None, [dict(index=torch.tensor(0), scores=torch.tensor([0.2]))])
    res = metric.compute_metrics(metric.results)
    frames = np.repeat(np.float32([0.2, 0.9, 0.3]), 16)
    assert res == {'pr_auc': pr_auc(frames, gt), 'ap': step_ap(frames, gt)}
    assert np.array_equal(np.load(tmp_path / 's.npy'), frames)
    metric.results = metric.results[:1]
    with pytest.raises(ValueError, match='32 predicted frames .* 48 labels'):
        metric.compute_metrics(metric.results)


def test_optim_constructor_names_missing_submodules():
    from plugins.core.optim import SubmoduleOptimWrapperConstructor
    model = _model(teacher=False)
    with pytest.raises(ValueError, match="submodule 'teacher'"):
        SubmoduleOptimWrapperConstructor({'teacher': dict(optimizer=dict(type='Adam'))})(model)


def test_a_nan_feature_skips_both_steps_and_names_the_loss(monkeypatch):
    import plugins.core.mmengine.nonfinite as guard
    from plugins.core.optim import SubmoduleOptimWrapperConstructor
    from tests.guard_check import check_guard
    messages = []
    monkeypatch.setattr(guard, 'print_log', lambda msg, **kw: messages.append(msg))
    model = _model()
    model.lambda_b = model.lambda_n = 1.0
    wrappers = SubmoduleOptimWrapperConstructor(
        dict(
            type='NonFiniteSkipOptimWrapper',
            av=dict(optimizer=dict(type='Adam', lr=1e-3)),
            teacher=dict(optimizer=dict(type='Adam', lr=1e-3))))(
                model)
    bad = _batch()
    bad['visual'][0, 3, 7] = float('nan')
    key = check_guard(model, wrappers, bad, _batch(), messages)
    assert key != 'loss'  # a named term, not only the total
