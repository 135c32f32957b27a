"""GO-LSD on the second host: Deformable-DETR with box refinement."""
import os

import pytest
import torch

from .conftest import ROOT, samples

SIZE = 96
TWO_STAGE = os.path.join(
    ROOT, 'configs/golsd/deformable-detr-refine-twostage_r50_golsd_16xb2-50e_coco.py')
SINGLE = os.path.join(ROOT, 'configs/golsd/deformable-detr-refine_r50_golsd_16xb2-50e_coco.py')


def _tiny(path, seed=0):
    """The upstream-inheriting config at test size (R-18, 1+3 layers, 20 queries)."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import plugins  # noqa: F401
    register_all_modules()
    cfg = Config.fromfile(path)
    m = cfg.model
    m.backbone.update(depth=18, init_cfg=None, frozen_stages=-1)
    m.neck.in_channels = [128, 256, 512]
    m.encoder.num_layers = 1
    m.decoder.num_layers = 3
    m.num_queries = 20
    m.bbox_head.num_classes = 2
    m.test_cfg.max_per_img = 20
    torch.manual_seed(seed)
    model = MODELS.build(m)
    model.init_weights()
    return model


@pytest.fixture(scope='module', params=['two_stage', 'single'])
def model(request):
    return _tiny(TWO_STAGE if request.param == 'two_stage' else SINGLE)


def _outputs(model, counts):
    torch.manual_seed(0)
    imgs = torch.randn(len(counts), 3, SIZE, SIZE)
    data = samples(counts, SIZE)
    return model.forward_transformer(model.extract_feat(imgs), data), data


def test_zero_init_boxes_equal_anchors_and_pre_box_start(model):
    model.train()
    with torch.no_grad():
        out, _ = _outputs(model, [2, 1])
    for i in range(out['all_layers_boxes'].shape[0]):
        assert torch.allclose(out['all_layers_boxes'][i], out['anchors'], atol=1e-6)
    ref, pre = out['references'][0], out['pre_boxes']
    assert torch.allclose(pre[..., :2], ref[..., :2], atol=1e-4)
    if ref.shape[-1] == 2:  # single stage: the host's w, h start
        assert torch.allclose(pre[..., 2:],
                              torch.sigmoid(torch.tensor(-2.0)).expand_as(pre[..., 2:]))
    else:
        assert torch.allclose(pre, ref, atol=1e-4)


def test_loss_keys_and_finiteness(model):
    model.train()
    torch.manual_seed(0)
    imgs = torch.randn(2, 3, SIZE, SIZE)
    full = model.loss(imgs, samples([2, 1], SIZE))
    empty = model.loss(imgs, samples([0, 0], SIZE))
    assert set(full) == set(empty)
    L = model.decoder.num_layers
    want = {
        'loss_cls', 'loss_bbox', 'loss_iou', 'loss_fgl', 'pre_loss_cls', 'pre_loss_bbox',
        'pre_loss_iou', 'go_queries_per_gt'
    } | {f'd{i}.loss_{k}'
         for i in range(L - 1)
         for k in ('cls', 'bbox', 'iou', 'fgl', 'ddf')}
    if model.as_two_stage:
        want |= {'enc_loss_cls', 'enc_loss_bbox', 'enc_loss_iou'}
    assert set(full) == want
    assert not any(k.startswith('dn_') or '.dn_' in k for k in full)
    for losses in (full, empty):
        assert all(torch.isfinite(v).all() for v in losses.values())
    sum(full.values()).backward()
    model.zero_grad()


def test_gradient_routing(model):
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for branch in model.bbox_head.reg_branches[:model.decoder.num_layers]:
            branch[-1].weight.normal_(0, 0.05, generator=gen)
    model.train()

    def grads(key):
        model.zero_grad()
        torch.manual_seed(0)
        model.loss(torch.randn(2, 3, SIZE, SIZE), samples([2, 1], SIZE))[key].backward()
        out = []
        for b in model.bbox_head.reg_branches[:model.decoder.num_layers]:
            g = b[-1].weight.grad
            out.append(0.0 if g is None else g.abs().sum().item())
        return out

    g = grads('d1.loss_fgl')
    assert g[0] > 0 and g[1] > 0 and g[2] == 0
    g = grads('d0.loss_ddf')
    assert g[0] > 0 and g[1] == 0 and g[2] == 0
    model.zero_grad()
    model.init_weights()


def test_predict(model):
    model.eval()
    with torch.no_grad():
        res = model.predict(torch.randn(1, 3, SIZE, SIZE), samples([1], SIZE))
    assert res[0].pred_instances.bboxes.shape[1] == 4


def test_requires_box_refinement():
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import plugins  # noqa: F401
    register_all_modules()
    cfg = Config.fromfile(SINGLE)
    cfg.model.with_box_refine = False
    with pytest.raises(ValueError, match='with_box_refine'):
        MODELS.build(cfg.model)


def test_upstream_inheriting_configs_build_with_expected_extra_parameters():
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import plugins  # noqa: F401
    register_all_modules()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    for path, n_branches in ((TWO_STAGE, 7), (SINGLE, 6)):
        cfg = Config.fromfile(path)
        assert cfg.model.type == 'GOLSDDeformableDETR' and cfg.model.with_box_refine
        golsd = MODELS.build(cfg.model)
        plain_cfg = Config.fromfile(path)
        plain_cfg.model.type = 'DeformableDETR'
        plain_cfg.model.bbox_head.type = 'DeformableDETRHead'
        plain_cfg.model.pop('golsd')
        for k in ('loss_fgl', 'loss_ddf'):
            plain_cfg.model.bbox_head.pop(k)
        plain = MODELS.build(plain_cfg.model)
        extra = 6 * 128 * 257 + (2 * (256 * 256 + 256) + 256 * 4 + 4)
        assert count(golsd) - count(plain) == extra
        assert len(golsd.bbox_head.reg_branches) == n_branches


def test_encoder_terms_equal_the_hosts_and_train_with_vfl():
    """The two-stage encoder loss (all tokens, class-agnostic) equals the host's
    ``loss_by_feat_single`` with Focal; with VFL (which the host cannot run:
    it passes labels) every term is finite and trains."""
    import copy

    from mmdet.registry import MODELS
    model = _tiny(TWO_STAGE)
    model.train()
    head = model.bbox_head
    assert type(head.loss_cls).__name__ == 'VarifocalLoss'  # the config's default
    head.loss_cls = MODELS.build(
        dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
             loss_weight=2.0))  # the host's
    out, data = _outputs(model, [2, 1])
    gts = [d.gt_instances for d in data]
    metas = [d.metainfo for d in data]
    agnostic = copy.deepcopy(gts)
    for g in agnostic:
        g.labels = torch.zeros_like(g.labels)
    cls, boxes = out['enc_outputs_class'], out['enc_outputs_coord']
    ref = head.loss_by_feat_single(cls, boxes, batch_gt_instances=agnostic, batch_img_metas=metas)
    got = head._encoder_losses(cls, boxes, agnostic, metas)
    for key, value in zip(('enc_loss_cls', 'enc_loss_bbox', 'enc_loss_iou'), ref):
        assert got[key].item() == pytest.approx(value.item(), rel=1e-6), key
    head.loss_cls = MODELS.build(
        dict(
            type='VarifocalLoss',
            use_sigmoid=True,
            alpha=0.75,
            gamma=2.0,
            iou_weighted=True,
            loss_weight=1.0))
    torch.manual_seed(0)
    losses = model.loss(torch.randn(2, 3, SIZE, SIZE), samples([2, 1], SIZE))
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses['enc_loss_cls'].item() > 0 and losses['loss_cls'].item() > 0
    sum(losses.values()).backward()
