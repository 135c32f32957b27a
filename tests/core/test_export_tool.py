"""tools/export.py: the stored training config, nested --drop, unmatched patterns."""
import os
import sys

import pytest
import torch

pytest.importorskip('mmengine')

from plugins.core.checkpoint import load_checkpoint, save_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLSD_DEMO = os.path.join(ROOT, 'configs/golsd/dino-tiny_r18_golsd_1xb8-12e_demo-coco.py')


def _export(*argv):
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    try:
        import export
    finally:
        sys.path.pop(0)
    export.main([str(a) for a in argv])


def test_without_config_the_stored_training_config_drops_training_only_parts(tmp_path, capsys):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import plugins  # noqa: F401
    register_all_modules()
    cfg = Config.fromfile(GOLSD_DEMO)
    text = cfg.pretty_text  # as the Runner stores it (before the build adds head keys)
    model = MODELS.build(cfg.model)
    src = tmp_path / 'epoch_1.pth'
    save_checkpoint({'state_dict': model.state_dict(), 'meta': {'cfg': text}}, src)
    _export(src, tmp_path / 'deploy.pth')
    out = capsys.readouterr().out
    state = load_checkpoint(tmp_path / 'deploy.pth')['state_dict']
    assert not any(k.startswith('dn_query_generator.') for k in state)
    assert 'stored in the checkpoint' in out and 'dn_query_generator (1)' in out


def test_nested_drop_and_unmatched_patterns(tmp_path, capsys):
    src = tmp_path / 'iter_4.pth'
    save_checkpoint(
        {
            'state_dict': {
                'backbone.dsd_heads.L1.weight': torch.ones(2),
                'backbone.dsd_heads.L1.bias': torch.ones(2),
                'backbone.enc.weight': torch.ones(2),
                'decode_head.conv_seg.weight': torch.ones(2)
            }
        }, src)
    _export(src, tmp_path / 'deploy.pth', '--drop', 'dsd_heads')
    state = load_checkpoint(tmp_path / 'deploy.pth')['state_dict']
    assert sorted(state) == ['backbone.enc.weight', 'decode_head.conv_seg.weight']
    assert 'dropped 2 keys: dsd_heads (2)' in capsys.readouterr().out
    with pytest.raises(
            ValueError, match=r"--drop \['teacher'\] match\(es\) no key of .*iter_4.pth"):
        _export(src, tmp_path / 'other.pth', '--drop', 'dsd_heads', 'teacher')
    assert not (tmp_path / 'other.pth').exists()
