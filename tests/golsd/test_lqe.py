"""The optional location-quality term (LQE): statistics, zero start, training,
and the DDF teacher logits that include it."""
import math

import pytest
import torch

from plugins.golsd.functional import lqe_statistics

from .conftest import GOLSD_DEMO, samples

SIZE = 64


def test_statistics_hand_case_and_errors():
    # one query, R + 1 = 4 bins; edge probabilities ∝ (1, 2, 3, 4), then uniform
    logits = torch.log(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    corners = torch.cat([logits, torch.zeros(4), logits.flip(0), torch.zeros(4)])[None]
    stats = lqe_statistics(corners, k=2)
    assert stats.shape == (1, 12) and stats.dtype == torch.float32
    want = torch.tensor([0.4, 0.3, 0.35, 0.25, 0.25, 0.25, 0.4, 0.3, 0.35, 0.25, 0.25, 0.25])
    torch.testing.assert_close(stats[0], want)
    assert lqe_statistics(corners.half(), k=4).dtype == torch.float32
    with pytest.raises(ValueError, match='4·\\(R\\+1\\) entries'):
        lqe_statistics(torch.zeros(2, 10))
    with pytest.raises(ValueError, match='k must be in 1..4'):
        lqe_statistics(corners, k=5)


def _build(lqe):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import plugins  # noqa: F401
    register_all_modules()
    cfg = Config.fromfile(GOLSD_DEMO)
    if lqe is not None:
        cfg.model.bbox_head.lqe = lqe
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def _losses(model, seed=0):
    model.train()
    torch.manual_seed(seed)
    imgs = torch.randn(2, 3, SIZE, SIZE)
    return model.loss(imgs, samples([2, 1], SIZE))


def _perturb_branches(*models):
    gen = torch.Generator().manual_seed(1)
    noise = [
        torch.randn(b[-1].weight.shape, generator=gen) * 0.05
        for b in models[0].bbox_head.reg_branches[:models[0].decoder.num_layers]
    ]
    with torch.no_grad():
        for m in models:
            for b, n in zip(m.bbox_head.reg_branches, noise):
                b[-1].weight.copy_(n)


def test_lqe_starts_at_zero_trains_and_feeds_the_ddf_teacher():
    plain, lqe = _build(None), _build(dict(k=4, hidden=64))
    layers = lqe.decoder.num_layers
    extra = sum(p.numel() for p in lqe.bbox_head.lqe_layers.parameters())
    assert extra == layers * (20 * 64 + 64 + 64 + 1)  # 1,409 a decoder layer
    missing, unexpected = lqe.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith('bbox_head.lqe_layers.') for k in missing)
    _perturb_branches(plain, lqe)
    a, b = _losses(plain), _losses(lqe)
    assert a.keys() == b.keys()
    for k in a:  # zero-initialised last layer: the same model at the start
        torch.testing.assert_close(b[k], a[k], msg=k)
    sum(v for k, v in b.items() if 'loss' in k).backward()
    for layer in lqe.bbox_head.lqe_layers:
        assert layer.mlp[-1].weight.grad.abs().sum() > 0
    # the last layer's term is in the logits the DDF teacher reads
    with torch.no_grad():
        lqe.bbox_head.lqe_layers[-1].mlp[-1].bias.fill_(2.0)
    c = _losses(lqe)
    assert c['d0.loss_ddf'].item() != pytest.approx(b['d0.loss_ddf'].item(), rel=1e-4)
    assert c['d0.loss_fgl'].item() == pytest.approx(b['d0.loss_fgl'].item(), rel=1e-6)


def test_lqe_shifts_logits_in_inference_and_needs_corners():
    lqe = _build(dict())
    head = lqe.bbox_head
    with torch.no_grad():
        for layer in head.lqe_layers:
            layer.mlp[-1].bias.fill_(0.5)
    lqe.eval()
    torch.manual_seed(0)
    imgs = torch.randn(2, 3, SIZE, SIZE)
    data = samples([1, 1], SIZE)
    with torch.no_grad():
        feats = lqe.extract_feat(imgs)
        out = lqe.forward_transformer(feats, data)
        cls, _ = head(
            out['hidden_states'],
            out['references'],
            all_layers_boxes=out['all_layers_boxes'],
            all_layers_corners=out['all_layers_corners'])
        plain = torch.stack(
            [head.cls_branches[i](out['hidden_states'][i]) for i in range(cls.shape[0])])
        torch.testing.assert_close(cls, plain + 0.5)
        results = lqe.predict(imgs, data)
    assert results[0].pred_instances.scores.shape == (30, )
    assert all(math.isfinite(s) for s in results[0].pred_instances.scores.tolist())
    with pytest.raises(ValueError, match='with lqe needs all_layers_corners'):
        head(out['hidden_states'], out['references'], all_layers_boxes=out['all_layers_boxes'])
