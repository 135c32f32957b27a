import os
import pickle
import subprocess
import sys
import textwrap
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import plugins  # noqa: F401  (allow-list set-up)
from plugins.core.checkpoint import (UnsafeCheckpointError, atomic_write_bytes, export_state_dict,
                                     load_checkpoint, save_checkpoint, training_only_prefixes)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Evil:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


class _GetattrEscape:
    """Reaches a non-statistics attribute of an allow-listed class."""

    def __reduce__(self):
        from mmengine.logging.history_buffer import HistoryBuffer
        return (getattr, (HistoryBuffer, '__init__'))


def _message_hub_checkpoint():
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('test_checkpoint_hub')
    for v in (1.0, 2.0, 3.5):
        hub.update_scalar('train/loss', v)
    hub.update_info('iter', 3)
    return {
        'meta': {
            'epoch': 1,
            'iter': 3,
            'seed': 0,
            'mmengine_version': '0.10.7',
            'dataset_meta': {
                'classes': ('a', 'b'),
                'palette': [(1, 2, 3)]
            }
        },
        'state_dict':
        OrderedDict(w=torch.arange(4.0)),
        'message_hub':
        hub.state_dict(),
        'param_schedulers': [{
            'milestones': __import__('collections').Counter([8, 11]),
            'last_step': 3,
            'base_values': [0.01]
        }],
        'rng':
        np.random.get_state()[1][:8],
        'scalar':
        np.float64(1.5),
    }


def test_roundtrip(tmp_path):
    path = tmp_path / 'a.pth'
    obj = {'state_dict': OrderedDict(x=torch.randn(3)), 'meta': {'epoch': 2}}
    save_checkpoint(obj, path)
    back = load_checkpoint(path)
    assert torch.equal(back['state_dict']['x'], obj['state_dict']['x'])
    assert back['meta'] == {'epoch': 2}


def test_mmengine_checkpoint_loads_with_weights_only(tmp_path):
    from mmengine.logging.history_buffer import HistoryBuffer
    from mmengine.runner.checkpoint import _load_checkpoint
    path = str(tmp_path / 'hub.pth')
    torch.save(_message_hub_checkpoint(), path)
    for loaded in (load_checkpoint(path), _load_checkpoint(path, map_location='cpu'),
                   torch.load(path)):  # torch's default is weights_only=True
        buf = loaded['message_hub']['log_scalars']['train/loss']
        assert isinstance(buf, HistoryBuffer)
        assert buf.mean() == pytest.approx(6.5 / 3)
        assert buf.statistics('min') == 1.0
        assert loaded['scalar'] == 1.5


def test_without_the_plugin_torch_refuses_mmengine_checkpoints(tmp_path):
    """The allow-list is what makes it load: plain mmengine + torch fails."""
    path = str(tmp_path / 'hub.pth')
    torch.save(_message_hub_checkpoint(), path)
    code = textwrap.dedent(f"""
        import pickle, sys
        from mmengine.runner.checkpoint import _load_checkpoint
        try:
            _load_checkpoint({path!r}, map_location='cpu')
        except pickle.UnpicklingError:
            sys.exit(3)
        sys.exit(0)
    """)
    rc = subprocess.run([sys.executable, '-c', code], cwd=str(tmp_path)).returncode
    assert rc == 3


def test_malicious_checkpoint_is_refused(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'payload': _Evil(str(marker))}, str(path))
    with pytest.raises(UnsafeCheckpointError, match='evil.pth.*(system|GLOBAL)'):
        load_checkpoint(path)
    # mmengine's own loader goes through torch's weights_only default as well
    from mmengine.runner.checkpoint import _load_checkpoint
    with pytest.raises(pickle.UnpicklingError):
        _load_checkpoint(str(path), map_location='cpu')
    assert not marker.exists()


def test_getattr_is_restricted_to_statistics_methods(tmp_path):
    path = tmp_path / 'escape.pth'
    torch.save({'x': _GetattrEscape()}, str(path))
    with pytest.raises(UnsafeCheckpointError, match="'__init__'"):
        load_checkpoint(path)
    from mmengine.logging.history_buffer import HistoryBuffer

    from plugins.core.checkpoint import _restricted_getattr
    assert _restricted_getattr(HistoryBuffer, 'min') is HistoryBuffer.min
    for obj, name in [(HistoryBuffer, '__init__'), (HistoryBuffer.min, '__globals__'),
                      (os, 'system'), (HistoryBuffer, '_statistics_methods')]:
        with pytest.raises(UnsafeCheckpointError):
            _restricted_getattr(obj, name)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_checkpoint(tmp_path / 'nope.pth')


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / 'ckpt.pth'
    save_checkpoint({'v': torch.tensor(1)}, path)

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, 'replace', boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({'v': torch.tensor(2)}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)['v'].item() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ['ckpt.pth']


def test_sigkill_during_writes_never_leaves_a_broken_file(tmp_path):
    path = tmp_path / 'big.pth'
    save_checkpoint({'i': 0, 'w': torch.zeros(1)}, path)
    code = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {ROOT!r})
        from plugins.core.checkpoint import save_checkpoint
        w = torch.randn(4_000_000)
        i = 0
        print('ready', flush=True)
        while True:
            i += 1
            save_checkpoint({{'i': i, 'w': w}}, {str(path)!r})
    """)
    import signal
    import time
    for delay in (0.3, 0.55, 0.8):
        proc = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE)
        proc.stdout.readline()
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        obj = load_checkpoint(path)  # always a complete file
        assert obj['i'] >= 0
    leftovers = [p for p in tmp_path.iterdir() if p.name != 'big.pth']
    # a kill can leave a temporary file behind, never a truncated checkpoint
    assert all(p.name.startswith('.big.pth.') for p in leftovers)


def test_the_atomic_backend_is_opt_in_and_writes_atomically(tmp_path):
    from mmengine.fileio import LocalBackend, get_file_backend

    from plugins.core.mmengine import AtomicLocalBackend

    # importing the plugins leaves mmengine's own local backend alone
    assert type(get_file_backend(str(tmp_path / 'x.pth'))) is LocalBackend
    backend = get_file_backend(str(tmp_path / 'x.pth'), backend_args=dict(backend='atomic_local'))
    assert isinstance(backend, AtomicLocalBackend)
    backend.put(b'abc', str(tmp_path / 'sub' / 'x.bin'))
    backend.put_text('last', str(tmp_path / 'last_checkpoint'))
    assert (tmp_path / 'sub' / 'x.bin').read_bytes() == b'abc'
    assert (tmp_path / 'last_checkpoint').read_text() == 'last'


def test_atomic_write_bytes_creates_folders(tmp_path):
    atomic_write_bytes(b'1', tmp_path / 'a' / 'b' / 'c.bin')
    assert (tmp_path / 'a' / 'b' / 'c.bin').read_bytes() == b'1'


# ---------------------------------------------------------------------- export
class _Student(nn.Module):
    training_only_modules = ('distill_head', )

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
        self.distill_head = nn.Linear(3, 3)
        self.teacher = nn.Linear(2, 2)


def test_export_drops_declared_and_named_parts():
    model = _Student()
    sd, dropped = export_state_dict(model, drop=['teacher'])
    assert sorted(sd) == ['net.0.bias', 'net.0.weight', 'net.1.bias', 'net.1.weight']
    assert sorted(dropped) == [
        'distill_head.bias', 'distill_head.weight', 'teacher.bias', 'teacher.weight'
    ]
    assert training_only_prefixes(model) == ['distill_head']
    stock = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    sd, _ = export_state_dict(model, strip_prefix='net')
    stock.load_state_dict(sd, strict=True)
    assert torch.equal(stock[0].weight, model.net[0].weight)


def test_export_from_checkpoint_dict_with_patterns_and_keep():
    ckpt = {
        'state_dict':
        OrderedDict([('a.w', torch.ones(1)), ('b.w', torch.ones(1)),
                     ('b.teacher_x', torch.ones(1))]),
        'meta': {}
    }
    sd, dropped = export_state_dict(ckpt, drop=['*teacher*'])
    assert list(sd) == ['a.w', 'b.w'] and dropped == ['b.teacher_x']
    sd, _ = export_state_dict(ckpt, keep=['a'])
    assert list(sd) == ['a.w']
    with pytest.raises(ValueError, match='no tensors'):
        export_state_dict(ckpt, keep=['zzz'])
    with pytest.raises(TypeError):
        export_state_dict(3)
    # 'a' must not swallow 'ab.*'
    sd, _ = export_state_dict(
        OrderedDict([('a.w', torch.ones(1)), ('ab.w', torch.ones(1))]), drop=['a'])
    assert list(sd) == ['ab.w']


def test_rng_state_roundtrip_through_a_checkpoint(tmp_path):
    import random

    from plugins.core.hooks import get_rng_state, set_rng_state
    state = get_rng_state()
    save_checkpoint({'rng_state': state}, tmp_path / 'r.pth')
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(load_checkpoint(tmp_path / 'r.pth')['rng_state'])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def _run_fresh(code: str) -> str:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


def test_an_mmengine_checkpoint_loads_before_mmengine_is_imported(tmp_path):
    """The refused HistoryBuffer names a watched host: importing it runs the
    adapter that allow-lists it, and the load is tried again."""
    path = str(tmp_path / 'hub.pth')
    torch.save(_message_hub_checkpoint(), path)
    out = _run_fresh('import sys; from plugins.core.checkpoint import load_checkpoint; '
                     f'assert "mmengine" not in sys.modules; c = load_checkpoint({path!r}); '
                     "print(type(c['message_hub']['log_scalars']['train/loss']).__name__)")
    assert out == 'HistoryBuffer'


def test_a_file_cannot_make_the_loader_import_other_packages(tmp_path):
    """A global of an installed package that is no watched host is refused, and
    the package stays unimported."""
    import tomllib
    path = str(tmp_path / 'other.pth')
    torch.save({'x': tomllib.TOMLDecodeError}, path)
    out = _run_fresh(
        'import sys; from plugins.core.checkpoint import UnsafeCheckpointError, load_checkpoint\n'
        f'try:\n    load_checkpoint({path!r})\nexcept UnsafeCheckpointError as err:\n'
        "    print('refused', 'tomllib' in sys.modules)")
    assert out == 'refused False'
