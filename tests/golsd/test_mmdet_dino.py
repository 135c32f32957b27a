"""The GO-LSD DINO detector in mmdet: init, keys, gradients, configs, inference."""
import os

import pytest
import torch

from .conftest import DINO_DEMO, GOLSD_DEMO, ROOT, build, samples

SIZE = 96


def _head_inputs(model, counts, seed=0):
    torch.manual_seed(seed)
    imgs = torch.randn(len(counts), 3, SIZE, SIZE)
    data = samples(counts, SIZE)
    feats = model.extract_feat(imgs)
    return model.forward_transformer(feats, data), data


def test_zero_init_boxes_equal_the_anchors(golsd_model):
    golsd_model.train()
    with torch.no_grad():
        out, _ = _head_inputs(golsd_model, [2, 1])
    boxes, anchors = out['all_layers_boxes'], out['anchors']
    for i in range(boxes.shape[0]):
        assert torch.allclose(boxes[i], anchors, atol=1e-6)
    # pre box = sigmoid(0 + logit(ref)): the initial reference (logit eps 1e-3)
    ref = out['references'][0]
    inner = (ref > 2e-3) & (ref < 1 - 2e-3)
    assert torch.allclose(out['pre_boxes'][inner], ref[inner], atol=1e-5)
    n_bins = golsd_model.golsd['reg_max'] + 1
    assert out['all_layers_corners'].shape[-1] == 4 * n_bins
    assert torch.all(out['all_layers_corners'] == 0)


def _loss(model, counts, seed=0):
    model.train()
    torch.manual_seed(seed)
    return model.loss(torch.randn(len(counts), 3, SIZE, SIZE), samples(counts, SIZE))


def test_every_loss_key_on_every_batch_kind(golsd_model):
    full = _loss(golsd_model, [2, 1])
    one_empty = _loss(golsd_model, [2, 0])
    none = _loss(golsd_model, [0, 0])
    assert set(full) == set(one_empty) == set(none)
    layers = golsd_model.decoder.num_layers
    expected = {'loss_fgl', 'dn_loss_fgl', 'pre_loss_cls', 'pre_loss_bbox', 'pre_loss_iou',
                'dn_pre_loss_cls', 'dn_pre_loss_bbox', 'dn_pre_loss_iou', 'enc_loss_cls'}
    expected |= {f'd{i}.loss_ddf' for i in range(layers - 1)}
    expected |= {f'd{i}.dn_loss_ddf' for i in range(layers - 1)}
    assert expected <= set(full)
    assert f'd{layers - 1}.loss_ddf' not in full and 'loss_ddf' not in full
    for losses in (full, one_empty, none):
        for k, v in losses.items():
            assert torch.isfinite(v).all(), k
    # without any ground truth every box-type term is exactly zero, with a graph
    for k in ('loss_fgl', 'loss_bbox', 'dn_loss_fgl', 'pre_loss_iou'):
        assert none[k].item() == 0 and none[k].requires_grad


def test_fgl_is_positive_and_ddf_zero_at_init(golsd_model):
    losses = _loss(golsd_model, [2, 1])
    assert losses['loss_fgl'].item() > 0 and losses['d0.loss_fgl'].item() > 0
    # zero-initialised branches: every layer has the same uniform distribution
    assert losses['d0.loss_ddf'].item() == pytest.approx(0, abs=1e-7)


def _perturbed(seed=1):
    model = build(GOLSD_DEMO, seed=0)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for branch in model.bbox_head.reg_branches[:model.decoder.num_layers]:
            branch[-1].weight.normal_(0, 0.05, generator=gen)
    return model


def _branch_grads(model, key, counts=(2, 1)):
    model.zero_grad()
    _loss(model, list(counts))[key].backward()
    grads = []
    for branch in model.bbox_head.reg_branches[:model.decoder.num_layers]:
        g = branch[-1].weight.grad
        grads.append(0.0 if g is None else g.abs().sum().item())
    return grads


def test_gradients_flow_through_residual_logits_not_through_the_teacher():
    model = _perturbed()
    g = _branch_grads(model, 'd1.loss_fgl')  # Z_1 = dZ_0 + dZ_1
    assert g[0] > 0 and g[1] > 0 and g[2] == 0
    g = _branch_grads(model, 'd0.loss_ddf')  # student Z_0; teacher Z_2 detached
    assert g[0] > 0 and g[1] == 0 and g[2] == 0
    g = _branch_grads(model, 'loss_fgl')  # the last layer trains every branch
    assert all(v > 0 for v in g)
    model.zero_grad()
    losses = _loss(model, [2, 1])
    assert losses['d0.loss_ddf'].item() > 0
    losses['pre_loss_bbox'].backward()
    assert model.bbox_head.pre_head[-1].weight.grad.abs().sum() > 0


def test_predict_and_tensor_modes(golsd_model):
    golsd_model.eval()
    data = samples([1, 1], SIZE)
    with torch.no_grad():
        results = golsd_model.predict(torch.randn(2, 3, SIZE, SIZE), data)
        cls, boxes = golsd_model._forward(torch.randn(2, 3, SIZE, SIZE), data)
    assert results[0].pred_instances.bboxes.shape == (30, 4)
    assert cls.shape[:3] == boxes.shape[:3] == (golsd_model.decoder.num_layers, 2, 30)


def test_upstream_inheriting_config_builds_with_the_expected_extra_parameters():
    from mmengine.config import Config
    cfg_path = os.path.join(ROOT, 'configs/golsd/dino-4scale_r50_golsd_8xb2-12e_coco.py')
    cfg = Config.fromfile(cfg_path)
    assert cfg.model.type == 'GOLSDDINO' and cfg.model.bbox_head.type == 'GOLSDDINOHead'
    assert cfg.model.num_queries == 900 and cfg.model.backbone.depth == 50  # upstream kept
    import plugins  # noqa: F401
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    golsd = MODELS.build(cfg.model)
    cfg = Config.fromfile(cfg_path)  # building fills the nested dicts in
    cfg.model.type, cfg.model.bbox_head.type = 'DINO', 'DINOHead'
    for k in ('golsd',):
        cfg.model.pop(k)
    for k in ('loss_fgl', 'loss_ddf'):
        cfg.model.bbox_head.pop(k)
    plain = MODELS.build(cfg.model)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # six FDR branches widen 256->4 to 256->132, plus the pre head (same MLP)
    extra = 6 * 128 * 257 + (2 * (256 * 256 + 256) + 256 * 4 + 4)
    assert count(golsd) - count(plain) == extra  # about 0.33 M, as the spec says
    assert len(golsd.bbox_head.reg_branches) == 7
    assert golsd.bbox_head.reg_branches[6][-1].out_features == 4  # encoder branch


def test_plain_dino_demo_config_is_the_baseline():
    from mmengine.config import Config
    a, b = Config.fromfile(DINO_DEMO), Config.fromfile(GOLSD_DEMO)
    assert a.model.type == 'DINO' and b.model.type == 'GOLSDDINO'
    strip = lambda m: {k: v for k, v in m.items() if k not in ('type', 'golsd', 'bbox_head')}  # noqa
    assert strip(a.model) == strip(b.model)


def test_bad_settings_are_named():
    from plugins.golsd.mmdet.fdr import fdr_config
    with pytest.raises(ValueError, match='reg_maxx'):
        fdr_config(dict(reg_maxx=16))


def _samples_with(boxes, labels, size=SIZE):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    s = DetDataSample(metainfo=dict(img_shape=(size, size), pad_shape=(size, size),
                                    batch_input_shape=(size, size), ori_shape=(size, size),
                                    scale_factor=(1., 1.)))
    s.gt_instances = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32),
                                  labels=torch.tensor(labels))
    return s


def test_degenerate_and_outside_boxes_give_finite_losses(golsd_model):
    golsd_model.train()
    data = [_samples_with([[10, 10, 10, 40], [20, 20, 50, 20]], [0, 1]),  # zero w / h
            _samples_with([[-30, -20, 40, 50], [80, 70, 150, 140]], [1, 0])]  # outside
    torch.manual_seed(0)
    losses = golsd_model.loss(torch.randn(2, 3, SIZE, SIZE), data)
    bad = [k for k, v in losses.items() if not torch.isfinite(v).all()]
    assert not bad
    sum(losses.values()).backward()
    grads = [p.grad for p in golsd_model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    golsd_model.zero_grad()


def test_non_finite_logits_are_zeroed_and_logged(golsd_model, caplog):
    golsd_model.train()
    torch.manual_seed(0)
    out, data = _head_inputs(golsd_model, [2, 1])
    head_inputs = dict(out)
    head_inputs['all_layers_corners'] = out['all_layers_corners'].clone()
    head_inputs['all_layers_corners'][1, 0, -1, 0] = float('nan')  # one matching query
    losses = golsd_model.bbox_head.loss(**head_inputs, batch_data_samples=data)
    assert all(torch.isfinite(v).all() for v in losses.values())
    golsd_model.bbox_head.nan_to_num = False
    try:
        raw = golsd_model.bbox_head.loss(**head_inputs, batch_data_samples=data)
    finally:
        golsd_model.bbox_head.nan_to_num = True
    assert not all(torch.isfinite(v).all() for v in raw.values())
