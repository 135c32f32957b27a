"""The GO-LSD DINO detector in mmdet: init, keys, gradients, configs, inference."""
import os
from unittest import mock

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
    expected = {
        'loss_fgl', 'dn_loss_fgl', 'pre_loss_cls', 'pre_loss_bbox', 'pre_loss_iou',
        'dn_pre_loss_cls', 'dn_pre_loss_bbox', 'dn_pre_loss_iou', 'enc_loss_cls'
    }
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
    # zero-initialised branches: every layer has the same uniform distribution.
    # The fused KL is T² (Σ p log p + logsumexp − Σ p z/T): at equal
    # distributions 0 up to float32 cancellation, T² · ε · log(R + 1) ≈ 3e-7.
    assert losses['d0.loss_ddf'].item() == pytest.approx(0, abs=1e-6)


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
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import plugins  # noqa: F401
    register_all_modules()
    golsd = MODELS.build(cfg.model)
    cfg = Config.fromfile(cfg_path)  # building fills the nested dicts in
    cfg.model.type, cfg.model.bbox_head.type = 'DINO', 'DINOHead'
    for k in ('golsd', ):
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

    def strip(m):
        return {k: v for k, v in m.items() if k not in ('type', 'golsd', 'bbox_head')}

    assert strip(a.model) == strip(b.model)


def test_bad_settings_are_named():
    from plugins.golsd.mmdet.fdr import fdr_config
    with pytest.raises(ValueError, match='reg_maxx'):
        fdr_config(dict(reg_maxx=16))


def _samples_with(boxes, labels, size=SIZE):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    s = DetDataSample(
        metainfo=dict(
            img_shape=(size, size),
            pad_shape=(size, size),
            batch_input_shape=(size, size),
            ori_shape=(size, size),
            scale_factor=(1., 1.)))
    s.gt_instances = InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32), labels=torch.tensor(labels))
    return s


def test_degenerate_and_outside_boxes_give_finite_losses(golsd_model):
    golsd_model.train()
    data = [
        _samples_with([[10, 10, 10, 40], [20, 20, 50, 20]], [0, 1]),  # zero w / h
        _samples_with([[-30, -20, 40, 50], [80, 70, 150, 140]], [1, 0])
    ]  # outside
    torch.manual_seed(0)
    losses = golsd_model.loss(torch.randn(2, 3, SIZE, SIZE), data)
    bad = [k for k, v in losses.items() if not torch.isfinite(v).all()]
    assert not bad
    sum(losses.values()).backward()
    grads = [p.grad for p in golsd_model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    golsd_model.zero_grad()


def test_non_finite_logits_are_zeroed_only_on_request(golsd_model):
    golsd_model.train()
    torch.manual_seed(0)
    out, data = _head_inputs(golsd_model, [2, 1])
    head_inputs = dict(out)
    head_inputs['all_layers_corners'] = out['all_layers_corners'].clone()
    head_inputs['all_layers_corners'][1, 0, -1, 0] = float('nan')  # one matching query
    assert golsd_model.bbox_head.nan_to_num is False  # default: real values reach the log
    raw = golsd_model.bbox_head.loss(**head_inputs, batch_data_samples=data)
    bad = {k for k, v in raw.items() if not torch.isfinite(v).all()}
    assert bad and 'loss_cls' not in bad  # the box terms of layer 1 onwards, not classification
    golsd_model.bbox_head.nan_to_num = True  # the reference's behaviour
    try:
        losses = golsd_model.bbox_head.loss(**head_inputs, batch_data_samples=data)
    finally:
        golsd_model.bbox_head.nan_to_num = False
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert {k for k, v in losses.items() if float(v) == 0.0} >= bad


def test_export_drops_training_only_tensors_and_inference_is_unchanged(tmp_path):
    import numpy as np
    from mmdet.apis import inference_detector, init_detector

    from plugins.core.checkpoint import export_state_dict, save_checkpoint
    model = build(GOLSD_DEMO, seed=3)
    full = model.state_dict()
    state, dropped = export_state_dict(model)
    assert dropped and all(k.startswith('dn_query_generator.') for k in dropped)
    assert not any(k.startswith('dn_query_generator.') for k in state)
    assert set(state) | set(dropped) == set(full)
    ckpt = str(tmp_path / 'deploy.pth')
    save_checkpoint({
        'state_dict': state,
        'meta': {
            'dataset_meta': {
                'classes': ('square', 'disc')
            }
        }
    }, ckpt)
    detector = init_detector(GOLSD_DEMO, ckpt, device='cpu')
    img = (np.random.default_rng(0).random((96, 96, 3)) * 255).astype(np.uint8)
    result = inference_detector(detector, img)
    model.eval()
    reference = inference_detector(_with_cfg(model, detector), img)
    assert torch.allclose(result.pred_instances.scores, reference.pred_instances.scores)
    assert torch.allclose(result.pred_instances.bboxes, reference.pred_instances.bboxes)


def _with_cfg(model, detector):
    """The training model, set up for mmdet's inference API like ``detector``."""
    model.cfg = detector.cfg
    model.dataset_meta = detector.dataset_meta
    return model


def test_varifocal_option_matches_the_reference_formula():
    """VFL: BCE(x, t) with t = IoU·onehot, weight 0.75·σ(x)²·(1−onehot) + t, / #GT."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import plugins  # noqa: F401
    from plugins.golsd.functional import aligned_iou, cxcywh_to_xyxy
    from plugins.golsd.mmdet.matching import GroundTruth as _GT
    register_all_modules()
    cfg = Config.fromfile(GOLSD_DEMO)
    cfg.model.bbox_head.loss_cls = dict(
        type='VarifocalLoss',
        use_sigmoid=True,
        alpha=0.75,
        gamma=2.0,
        iou_weighted=True,
        loss_weight=1.0)
    cfg.model.bbox_head.sync_cls_avg_factor = False
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    head = model.bbox_head
    data = samples([2, 1], SIZE)
    gts = [d.gt_instances for d in data]
    gt = _GT(gts, [d.metainfo for d in data], torch.device('cpu'))
    cls = torch.randn(2, 5, 2)
    boxes = torch.rand(2, 5, 4) * 0.3 + 0.3
    match = (torch.tensor([0, 0, 1]), torch.tensor([1, 3, 0]), torch.tensor([0, 1, 0]))
    from plugins.golsd.mmdet.host_losses import classification_loss
    got = classification_loss(head, cls, match, gt, boxes)
    t = torch.zeros(2, 5, 2)
    for b, q, g in zip(*[m.tolist() for m in match]):
        row = gt.rows(torch.tensor(b), torch.tensor(g))
        u = aligned_iou(cxcywh_to_xyxy(boxes[b, q]), gt.xyxy[row])
        t[b, q, int(gt.labels[row])] = u
    onehot = (t > 0).float()
    w = 0.75 * cls.sigmoid()**2 * (1 - onehot) + t
    bce = torch.nn.functional.binary_cross_entropy_with_logits(cls, t, reduction='none')
    assert got.item() == pytest.approx(((w * bce).sum() / 3).item(), rel=1e-5)


def test_zero_loss_weights_give_zero_terms_with_graph(golsd_model):
    head = golsd_model.bbox_head
    old = head.loss_fgl.loss_weight, head.loss_ddf.loss_weight
    head.loss_fgl.loss_weight = head.loss_ddf.loss_weight = 0.0
    try:
        gen = torch.Generator().manual_seed(4)
        with torch.no_grad():
            saved = [b[-1].weight.clone() for b in head.reg_branches[:3]]
            for b in head.reg_branches[:3]:
                b[-1].weight.normal_(0, 0.05, generator=gen)
        losses = _loss(golsd_model, [2, 1])
        for k in ('loss_fgl', 'd0.loss_fgl', 'd0.loss_ddf', 'dn_loss_fgl', 'd1.dn_loss_ddf'):
            assert losses[k].item() == 0 and losses[k].requires_grad, k
        assert losses['loss_bbox'].item() > 0
    finally:
        head.loss_fgl.loss_weight, head.loss_ddf.loss_weight = old
        with torch.no_grad():
            for b, w in zip(head.reg_branches[:3], saved):
                b[-1].weight.copy_(w)


def _dn_inputs(model, counts, seed=0):
    """Training outputs of a forward, the ground truth and the DN meta."""
    from plugins.golsd.mmdet.matching import GroundTruth as _GT
    model.train()
    torch.manual_seed(seed)
    out, data = _head_inputs(model, counts, seed)
    head = model.bbox_head
    cls, boxes = head(
        out['hidden_states'], out['references'], all_layers_boxes=out['all_layers_boxes'])
    gts = [d.gt_instances for d in data]
    metas = [d.metainfo for d in data]
    return out, cls, boxes, gts, metas, _GT(gts, metas, cls.device)


def _perturbed_model(config=GOLSD_DEMO):
    model = build(config)
    with torch.no_grad():  # non-zero box logits, so the boxes differ per layer
        for b in model.bbox_head.reg_branches[:3]:
            b[-1].weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
    return model


def test_denoising_terms_equal_the_hosts_with_focal_loss():
    """The DN classification / L1 / GIoU terms go through the head's own loss
    switch; with the host's Focal loss they equal DINOHead.loss_dn exactly."""
    from mmdet.registry import MODELS
    model = _perturbed_model()
    head = model.bbox_head
    head.loss_cls = MODELS.build(
        dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
             loss_weight=1.0))  # the host's
    out, cls, boxes, gts, metas, gt = _dn_inputs(model, [2, 1])
    dn_meta = out['dn_meta']
    num_dn = int(dn_meta['num_denoising_queries'])
    ref_cls, ref_bbox, ref_iou = head.loss_dn(
        cls[:, :, :num_dn],
        boxes[:, :, :num_dn],
        batch_gt_instances=gts,
        batch_img_metas=metas,
        dn_meta=dn_meta)
    got = head._dn_losses(cls, boxes, out['all_layers_corners'], out['anchors'], out['pre_boxes'],
                          num_dn, dn_meta, gt, (8, 100), gts, metas)
    for i in range(cls.shape[0]):
        key = 'dn_loss' if i == cls.shape[0] - 1 else f'd{i}.dn_loss'
        assert got[f'{key}_cls'].item() == pytest.approx(ref_cls[i].item(), rel=1e-6)
        assert got[f'{key}_bbox'].item() == pytest.approx(ref_bbox[i].item(), rel=1e-6)
        assert got[f'{key}_iou'].item() == pytest.approx(ref_iou[i].item(), rel=1e-6)


@pytest.mark.parametrize(
    'loss_cls',
    [
        None,  # the plugin config's VarifocalLoss
        dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0),
        dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0)
    ])
def test_every_classification_loss_trains_every_output_including_denoising(loss_cls):
    """VFL / QFL / Focal train every classification term (layers, pre, encoder,
    DN, DN pre); mmdet's own DN loss would pass labels to VFL and fail."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import plugins  # noqa: F401
    register_all_modules()
    cfg = Config.fromfile(GOLSD_DEMO)
    assert cfg.model.bbox_head.loss_cls.type == 'VarifocalLoss'  # the plugin's default
    if loss_cls is not None:
        cfg.model.bbox_head.loss_cls = loss_cls
    torch.manual_seed(0)
    with mock.patch('plugins.golsd.mmdet.head.print_log') as log:
        model = MODELS.build(cfg.model)
    name = type(model.bbox_head.loss_cls).__name__
    assert name == (loss_cls or cfg.model.bbox_head.loss_cls)['type']
    warned = [c for c in log.call_args_list if 'duplicates' in c.args[0]]
    assert len(warned) == (name == 'FocalLoss')  # Focal warns, naming the fix
    assert all("type='VarifocalLoss'" in c.args[0] for c in warned)
    model.init_weights()
    losses = _loss(model, [2, 1])
    for k in ('dn_loss_cls', 'd0.dn_loss_cls', 'dn_pre_loss_cls', 'pre_loss_cls', 'enc_loss_cls',
              'loss_cls'):
        assert torch.isfinite(losses[k]) and losses[k].item() > 0, k
    sum(losses.values()).backward()
    grad = model.dn_query_generator.label_embedding.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_go_union_size_is_logged_not_summed(golsd_model):
    """``go_queries_per_gt`` = |GO| / #GT: 1 for a one-to-one union, more when
    several queries per ground truth get box losses; mmengine logs it but does
    not add it to the loss (no 'loss' in the key)."""
    from mmengine.model import BaseModel

    import plugins.golsd.mmdet.matching as head_module
    calls = []
    union = head_module.go_union

    def spy(sets):
        calls.append(union(sets))
        return calls[-1]

    with mock.patch.object(head_module, 'go_union', spy):
        losses = _loss(golsd_model, [2, 1])
    assert losses['go_queries_per_gt'].item() == pytest.approx(calls[0][0].numel() / 3)
    assert losses['go_queries_per_gt'].item(
    ) >= 1.0 and not losses['go_queries_per_gt'].requires_grad
    total, log = BaseModel.parse_losses(golsd_model, losses)
    assert 'go_queries_per_gt' in log
    summed = sum(v for k, v in losses.items() if 'loss' in k)
    assert total.item() == pytest.approx(summed.item(), rel=1e-6)
    assert _loss(golsd_model, [0, 0])['go_queries_per_gt'].item() == 0.0


def test_a_nan_pixel_is_skipped_with_the_config_guard(monkeypatch):
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper

    import plugins.core.mmengine.nonfinite as guard
    from tests.guard_check import check_guard
    messages = []
    monkeypatch.setattr(guard, 'print_log', lambda msg, **kw: messages.append(msg))
    model = build(GOLSD_DEMO, seed=4)
    wrapper = build_optim_wrapper(model, Config.fromfile(GOLSD_DEMO).optim_wrapper)
    torch.manual_seed(5)

    def batch(nan):
        imgs = [torch.rand(3, 96, 96) * 255 for _ in range(2)]
        if nan:
            imgs[0][1, 40, 50] = float('nan')
        return dict(inputs=imgs, data_samples=samples([2, 1]))

    key = check_guard(model, wrapper, batch(True), batch(False), messages)
    assert key != 'loss'


def test_box_matches_own_gives_the_box_losses_the_classification_match():
    """``box_matches='own'``: each output's L1 and GIoU use the one-to-one match
    of its classification, normalised by that match's size; ``'go'`` (default)
    uses the GO union, which is larger here. Classification is the same in both."""
    import plugins.golsd.mmdet.head as head_module
    model = _perturbed_model()
    cls_fn, box_fn = head_module.classification_loss, head_module.box_losses
    calls = []

    def cls_spy(head, cls, match, gt, boxes):
        calls.append(('cls', match, None))
        return cls_fn(head, cls, match, gt, boxes)

    def box_spy(head, boxes, match, gt, avg):
        calls.append(('box', match, avg))
        return box_fn(head, boxes, match, gt, avg)

    losses = {}
    for mode in ('go', 'own'):
        model.bbox_head.box_matches = mode
        calls.clear()
        with mock.patch.object(head_module, 'classification_loss', cls_spy), \
                mock.patch.object(head_module, 'box_losses', box_spy):
            losses[mode] = _loss(model, [2, 1])
        pairs = list(zip(calls[0::2], calls[1::2]))
        layers = model.decoder.num_layers
        assert len(pairs) == layers + 2  # every layer, the pre boxes, the encoder top-k
        for (kind_c, own, _), (kind_b, used, avg) in pairs:
            assert (kind_c, kind_b) == ('cls', 'box')
            n_own, n_used = own[0].numel(), used[0].numel()
            if mode == 'own':
                assert all(torch.equal(a, b) for a, b in zip(own, used))
                assert avg == max(n_own, 1)
            else:
                assert n_used >= n_own == 3  # one query per ground truth
        if mode == 'go':
            assert max(b[1][0].numel() for _, b in pairs) > 3
    for key in losses['go']:
        if key.endswith('_cls') and not key.startswith('dn_') and '.dn_' not in key:
            assert torch.equal(losses['go'][key], losses['own'][key]), key
    assert not torch.equal(losses['go']['loss_bbox'], losses['own']['loss_bbox'])


def test_an_unknown_box_matches_is_named():
    from mmdet.registry import MODELS
    from mmengine.config import Config

    import plugins  # noqa: F401
    cfg = Config.fromfile(GOLSD_DEMO)
    cfg.model.bbox_head.box_matches = 'union'
    with pytest.raises(ValueError, match="box_matches must be 'go' or 'own', got 'union'"):
        MODELS.build(cfg.model)
