"""Every plugin loss is a registered module built from a config dict.

The losses are found in the hosts' registries (not listed here), so a new
method's loss is covered as soon as its adapter registers it.
"""
import inspect

import pytest

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')


def _plugin_losses():
    import mmdet.models  # noqa: F401  (imports the mmdet adapters)
    import mmseg.models  # noqa: F401
    from mmdet.registry import MODELS as DET
    from mmengine.registry import MODELS as ROOT
    from mmseg.registry import MODELS as SEG

    import plugins  # noqa: F401
    found = {}
    for registry in (ROOT, DET, SEG):
        for name, cls in registry.module_dict.items():
            if cls.__module__.startswith('plugins.') and name.endswith('Loss'):
                found.setdefault(name, (cls, registry))
    return found


LOSSES = sorted(_plugin_losses())


def test_the_four_methods_register_their_losses():
    assert {
        'FGLLoss', 'DDFLoss', 'DSDLoss', 'TopKMILLoss', 'SemiBagContrastiveLoss',
        'SuperpixelNCELoss'
    } <= set(LOSSES)


@pytest.mark.parametrize('name', LOSSES)
def test_built_by_type_with_a_loss_weight_and_typos_name_the_nearest_key(name):
    from mmengine.registry import DefaultScope

    from plugins.core.options import build_registered
    cls, registry = _plugin_losses()[name]
    with DefaultScope.overwrite_default_scope(registry.scope):
        _check_built(name, cls, registry, build_registered)
    # a config may name the registry's scope itself
    loss = build_registered(
        dict(type=name, _scope_=registry.scope),
        name,
        registry,
        'cfg.loss',
        default_args=_host_args(cls))
    assert type(loss) is cls


def _host_args(cls):
    """What a host passes itself (DSD: its taps)."""
    return {'taps': None} if 'taps' in inspect.signature(cls).parameters else None


def _check_built(name, cls, registry, build_registered):
    params = inspect.signature(cls).parameters
    assert 'loss_weight' in params, f'{name} has no loss_weight'
    fixed = _host_args(cls)
    loss = build_registered(
        dict(type=name, loss_weight=0.25), name, registry, 'cfg.loss', default_args=fixed)
    assert type(loss) is cls and loss.loss_weight == 0.25
    with pytest.raises(ValueError, match=r"'loss_wieght' \(did you mean 'loss_weight'\?\)"):
        build_registered(
            dict(type=name, loss_wieght=0.25), name, registry, 'cfg.loss', default_args=fixed)
    with pytest.raises(KeyError, match=name):
        build_registered(dict(type=name[:-1]), name, registry, 'cfg.loss', default_args=fixed)
