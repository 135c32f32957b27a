"""``import plugins`` stays light and registers adapters in either import order."""
import subprocess
import sys
import textwrap

import pytest

from plugins.core.lazy import when_imported

HOSTS = ('mmengine', 'mmdet', 'mmseg', 'mmcv', 'monai', 'open3d')


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                         capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_import_plugins_imports_no_host_library():
    out = _run(f"""
        import sys
        import plugins, plugins.core
        print(','.join(m for m in {HOSTS!r} if m in sys.modules))
    """)
    assert out == ''


def test_adapters_register_when_mmengine_comes_after_plugins():
    out = _run("""
        import plugins
        from mmengine.registry import HOOKS, MODELS
        from mmengine.fileio import get_file_backend
        print(MODELS.get('TemperatureKLLoss').__name__, HOOKS.get('RNGStateHook').__name__,
              type(get_file_backend('/tmp/x')).__name__,
              type(get_file_backend('/tmp/x', backend_args=dict(backend='atomic_local'))).__name__)
    """)
    assert out == 'TemperatureKLLoss RNGStateHook LocalBackend AtomicLocalBackend'


def test_adapters_register_when_mmengine_comes_first():
    out = _run("""
        from mmengine.fileio import get_file_backend
        from mmengine.fileio import io
        cached = get_file_backend('/tmp/x', enable_singleton=True)
        before = dict(io.backend_instances)
        assert before
        from mmengine.registry import MODELS
        assert MODELS.get('InfoNCELoss') is None
        import plugins
        # the host's backend cache is not edited, and its local backend not replaced
        assert io.backend_instances == before
        assert get_file_backend('/tmp/x', enable_singleton=True) is cached
        print(MODELS.get('InfoNCELoss').__name__, type(get_file_backend('/tmp/x')).__name__)
    """)
    assert out == 'InfoNCELoss LocalBackend'


def test_custom_imports_in_a_config_registers_the_plugins(tmp_path):
    cfg = tmp_path / 'cfg.py'
    cfg.write_text("custom_imports = dict(imports=['plugins'], allow_failed_imports=False)\n"
                   "loss = dict(type='TemperatureKLLoss', temperature=2.0)\n")
    out = _run(f"""
        from mmengine.config import Config
        from mmdet.registry import MODELS
        cfg = Config.fromfile({str(cfg)!r})
        print(MODELS.build(cfg.loss).temperature)
    """)
    assert out == '2.0'


def test_when_imported_fires_after_import_and_at_once_if_loaded(tmp_path, monkeypatch):
    pkg = tmp_path / 'fake_host_pkg'
    pkg.mkdir()
    (pkg / '__init__.py').write_text('VALUE = 41\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []
    when_imported('fake_host_pkg', lambda m: seen.append(m.VALUE + 1))
    assert seen == []
    import fake_host_pkg  # noqa: F401
    assert seen == [42]
    assert fake_host_pkg.__spec__.loader.__class__.__name__ != '_CallbackLoader'
    when_imported('fake_host_pkg', lambda m: seen.append('now'))
    assert seen == [42, 'now']
    with pytest.raises(ValueError):
        when_imported('.relative', print)


def _mmengine_first() -> list:
    """Modules that import mmengine themselves: every package's mmengine adapter."""
    import plugins
    return ['plugins.core.optim'
            ] + [m for m in plugins.HOST_ADAPTERS['mmengine'] if not m.startswith('plugins.core')]


def test_every_package_declares_its_adapters():
    import plugins
    assert plugins.HOST_ADAPTERS == {
        'mmengine': [
            'plugins.core.mmengine', 'plugins.dsd.mmengine', 'plugins.macil.mmengine',
            'plugins.slidr.mmengine'
        ],
        'mmdet.datasets': ['plugins.core.mmdet'],
        'mmseg.models': ['plugins.dsd.mmseg'],
        'mmdet.models': ['plugins.golsd.mmdet']
    }


@pytest.mark.parametrize('first', _mmengine_first())
def test_importing_a_plugin_module_before_mmengine_has_no_cycle(first):
    """A module imported first may itself trigger the mmengine adapters."""
    code = (f'import importlib; importlib.import_module({first!r}); '
            'import plugins; from mmengine.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS; '
            "assert OPTIM_WRAPPER_CONSTRUCTORS.get('SubmoduleOptimWrapperConstructor'); "
            "assert MODELS.get('MACILSD') and MODELS.get('SLidRPretrainer') "
            "and MODELS.get('MonaiSegmentor')")
    _run(code)
