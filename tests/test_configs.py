"""Every shipped config loads, and the plugin datasets it names accept its keys."""
import glob
import inspect
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(
    p for p in glob.glob(os.path.join(ROOT, 'configs', '**', '*.py'), recursive=True)
    if os.sep + '_base_' + os.sep not in p)


def _datasets(cfg):
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        if loader and loader.get('dataset'):
            yield key, loader['dataset']


@pytest.mark.parametrize('path', CONFIGS, ids=[os.path.relpath(p, ROOT) for p in CONFIGS])
def test_config_loads_and_plugin_datasets_take_its_keys(path):
    pytest.importorskip('mmengine')
    from mmengine.registry import DATASETS
    from runner_setup import load_config

    import plugins  # noqa: F401
    cfg = load_config(path)
    assert cfg.get('model') and cfg.model.get('type')
    for key, dataset in _datasets(cfg):
        cls = DATASETS.get(dataset['type'])
        if cls is None or not cls.__module__.startswith('plugins.'):
            continue  # a host library's dataset
        params = inspect.signature(cls.__init__).parameters
        unknown = sorted(set(dataset) - {'type'} - set(params))
        assert not unknown, f'{key}.dataset ({dataset["type"]}) has unknown keys {unknown}'


@pytest.mark.parametrize('path', CONFIGS, ids=[os.path.relpath(p, ROOT) for p in CONFIGS])
def test_every_config_trains_through_the_non_finite_guard(path):
    pytest.importorskip('mmengine')
    from mmengine.registry import OPTIM_WRAPPERS
    from runner_setup import load_config

    import plugins  # noqa: F401
    from plugins.core.mmengine.nonfinite import NonFiniteSkipOptimWrapper
    cfg = load_config(path)
    wrapper = dict(cfg.optim_wrapper)
    if wrapper.get('constructor') == 'SubmoduleOptimWrapperConstructor':
        types = [
            sub.get('type', wrapper.get('type')) for key, sub in wrapper.items()
            if isinstance(sub, dict) and 'optimizer' in sub
        ]
    else:
        types = [wrapper.get('type')]
    assert types and all(OPTIM_WRAPPERS.get(t) is NonFiniteSkipOptimWrapper for t in types), types
    assert any(h.get('type') == 'NonFiniteGuardHook' for h in cfg.get('custom_hooks', []))
