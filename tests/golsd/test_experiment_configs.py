"""The row configs of tools/golsd_experiments.py: every override reaches the model."""
import importlib.util
import os
import sys

from .conftest import ROOT


def _tool():
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    path = os.path.join(ROOT, 'tools', 'golsd_experiments.py')
    spec = importlib.util.spec_from_file_location('golsd_experiments', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_merge_overrides_keeps_every_key():
    gx = _tool()
    merged = gx.merge_overrides([
        dict(backbone=dict(frozen_stages=4)),
        dict(bbox_head=dict(loss_fgl=dict(loss_weight=0.0))),
        dict(bbox_head=dict(loss_ddf=dict(loss_weight=0.0)))
    ])
    assert merged == dict(
        backbone=dict(frozen_stages=4),
        bbox_head=dict(loss_fgl=dict(loss_weight=0.0), loss_ddf=dict(loss_weight=0.0)))
    assert gx.merge_overrides([dict(a=dict(b=1)), dict(a=dict(b=2))]) == dict(a=dict(b=2))


def test_row_config_carries_the_backbone_and_every_override(tmp_path):
    """A config file keeps only its last ``model = ...``: each row writes one."""
    from mmengine.config import Config
    gx = _tool()
    ctx = gx.demo.DemoContext(str(tmp_path), str(tmp_path / 'data'), quick=False)
    backbone = dict(
        backbone=dict(
            init_cfg=dict(_delete_=True, type='Pretrained', checkpoint='x.pth'), frozen_stages=4))
    for row, fgl, ddf, cls in (('fdr-only', 0.0, 0.0, 'VarifocalLoss'),
                               ('ddf-only-focal', 0.0, 1.5, 'FocalLoss'), ('golsd', 0.15, 1.5,
                                                                           'VarifocalLoss')):
        _, base, overrides = gx.ROWS[row]
        model = Config.fromfile(gx.write_config(ctx, row, base, (backbone, ) + overrides)).model
        assert model.backbone.frozen_stages == 4 and model.backbone.init_cfg.type == 'Pretrained'
        assert model.bbox_head.loss_fgl.loss_weight == fgl, row
        assert model.bbox_head.loss_ddf.loss_weight == ddf, row
        assert model.bbox_head.loss_cls.type == cls, row
        if cls == 'FocalLoss':  # the VFL keys are gone (_delete_)
            assert 'iou_weighted' not in model.bbox_head.loss_cls
        assert model.bbox_head.get('lqe') is None, row
    _, base, overrides = gx.ROWS['golsd-lqe']
    model = Config.fromfile(gx.write_config(ctx, 'golsd-lqe', base, overrides)).model
    assert model.bbox_head.lqe == dict(k=4, hidden=64)
    assert model.bbox_head.loss_fgl.loss_weight == 0.15


def test_backbone_modes(tmp_path):
    import pytest
    from mmengine.config import Config
    gx = _tool()
    ctx = gx.demo.DemoContext(str(tmp_path), str(tmp_path / 'data'), quick=False)
    assert gx.backbone_override(ctx, 'scratch') == {}  # the base config's: random, trained
    _, base, overrides = gx.ROWS['golsd']
    model = Config.fromfile(gx.write_config(ctx, 'golsd', base, ({}, ) + overrides)).model
    assert model.backbone.frozen_stages == -1 and model.backbone.init_cfg is None
    ckpt = tmp_path / 'detection' / 'epoch_8.pth'
    ckpt.parent.mkdir()
    ckpt.write_bytes(b'')  # present: no detection stage is run
    frozen = gx.backbone_override(ctx, 'frozen')['backbone']
    tuned = gx.backbone_override(ctx, 'finetune')['backbone']
    assert frozen['frozen_stages'] == 4 and tuned['frozen_stages'] == -1
    assert frozen['init_cfg']['checkpoint'] == tuned['init_cfg']['checkpoint'] == str(ckpt)
    with pytest.raises(ValueError, match='backbone mode'):
        gx.backbone_override(ctx, 'imagenet')


def test_collect_runs_reads_runs_from_several_folders(tmp_path):
    import json

    import pytest
    gx = _tool()
    for folder, row, seed, value in (('a', 'plain', 0, 0.5), ('b', 'plain', 1, 0.7),
                                     ('b', 'golsd', 0, 0.6), ('a', 'golsd', 1, 0.8)):
        name = f'golsd_{row}_e3_s{seed}'
        (tmp_path / folder / 'logs').mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / 'logs' / f'{name}_test.log').write_text(
            f'Epoch(test) [3/3]    coco/bbox_mAP: {value:.4f}  coco/bbox_mAP_50: 0.9000\n')
        vis = tmp_path / folder / name / '20260101_000000' / 'vis_data'
        vis.mkdir(parents=True)
        (vis / 'scalars.json').write_text(json.dumps({'coco/bbox_mAP': value, 'step': 3}) + '\n')
    outs = [str(tmp_path / 'a'), str(tmp_path / 'b')]
    results = gx.collect_runs(outs, ['plain', 'golsd'], [0, 1], 3)
    assert [r['metrics']['coco/bbox_mAP'] for r in results['plain']] == [0.5, 0.7]
    assert [r['seed'] for r in results['golsd']] == [0, 1]
    assert gx.map_curve(results['golsd'][1]['rows']) == ([36], [0.8])
    table = gx.summary_table(results, 3)
    assert '| 36 | 2 | – | 0.600 |' in table and '0.600 / 0.800' in table
    with pytest.raises(FileNotFoundError, match='golsd_plain_e3_s2'):
        gx.collect_runs(outs, ['plain'], [2], 3)


def test_parallel_runs_have_one_thread_and_keep_row_and_seed_order(tmp_path, monkeypatch):
    import threading
    import time

    import pytest
    gx = _tool()
    ctx = gx.demo.DemoContext(str(tmp_path), str(tmp_path / 'data'), quick=False)
    monkeypatch.setattr(gx.demo, 'coco_data', lambda ctx: str(tmp_path / 'coco'))
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    seen, lock = [], threading.Lock()

    def fake_train(ctx, name, config, options, epochs, iters):
        time.sleep(0.05 if name.endswith('s0') else 0.0)  # finish out of order
        with lock:
            seen.append((name, os.environ.get('OMP_NUM_THREADS'), threading.get_ident()))
        return dict(metrics={'coco/bbox_mAP': 0.5}, rows=[], train_s=1.0, ckpt=name)

    monkeypatch.setattr(gx.demo, 'train_and_eval', fake_train)
    out = gx.run_rows(ctx, ['plain', 'golsd'], [0, 1], 2, 1, 1, jobs=2)
    assert [r['ckpt'] for r in out['plain']] == ['golsd_plain_e2_s0', 'golsd_plain_e2_s1']
    assert [r['seed'] for r in out['golsd']] == [0, 1]
    assert {t for _, t, _ in seen} == {'1'} and len({i for *_, i in seen}) == 2
    assert 'OMP_NUM_THREADS' not in os.environ  # restored
    sequential = gx.run_rows(ctx, ['plain'], [0], 2, 1, 1, jobs=1)
    assert seen[-1][1] is None and sequential['plain'][0]['seed'] == 0  # inherits the caller's
    with pytest.raises(ValueError, match='jobs'):
        gx.run_rows(ctx, ['plain'], [0], 2, 1, 1, jobs=0)


def test_demo_reuse_keeps_finished_runs_and_retrains_unfinished_ones(tmp_path, monkeypatch):
    gx = _tool()
    demo = gx.demo
    calls = []
    monkeypatch.setattr(
        demo.DemoContext,
        'run_tool',
        lambda self, args, log, desc, total=None: calls.append(log) or
        'Epoch(test) [3/3]    coco/bbox_mAP: 0.4000\n')
    import sys
    common = sys.modules[demo.train_and_eval.__module__]  # tools/demo_stages/common.py
    monkeypatch.setattr(common, 'find_scalars', lambda work_dir: work_dir)
    monkeypatch.setattr(common, 'read_scalars', lambda path: [])
    ctx = demo.DemoContext(str(tmp_path), str(tmp_path / 'data'), quick=False, reuse=True)
    (tmp_path / 'done').mkdir()
    (tmp_path / 'done' / 'epoch_2.pth').write_bytes(b'x')
    (tmp_path / 'logs').mkdir()
    (tmp_path / 'logs' / 'done_test.log').write_text('Epoch(test) [3/3]    coco/bbox_mAP: 0.7000\n')
    kept = demo.train_and_eval(ctx, 'done', 'cfg.py', [], 2, 12)
    assert kept['metrics']['coco/bbox_mAP'] == 0.7 and calls == []  # nothing retrained
    assert kept['train_s'] != kept['train_s']  # NaN: not timed
    fresh = demo.train_and_eval(ctx, 'unfinished', 'cfg.py', [], 2, 12)
    assert calls == ['unfinished_train.log', 'unfinished_test.log']
    assert fresh['metrics']['coco/bbox_mAP'] == 0.4
    ctx.reuse = False
    demo.train_and_eval(ctx, 'done', 'cfg.py', [], 2, 12)  # without --reuse: trained again
    assert calls[-2:] == ['done_train.log', 'done_test.log']
