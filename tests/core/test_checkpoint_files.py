"""Damaged, foreign and unsafe checkpoint files through every entry point,
legitimate checkpoints that must load, and saving that survives a kill."""
import io
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import torch

pytest.importorskip('mmengine')

import plugins  # noqa: F401
from plugins.core.checkpoint import (CheckpointMismatchError, CorruptCheckpointError,
                                     EmptyCheckpointError, NotACheckpointError,
                                     TruncatedCheckpointError, UnsafeCheckpointError,
                                     check_checkpoint_file, load_checkpoint, save_checkpoint)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_2D = os.path.join(ROOT, 'configs/dsd/unet-s5-d16_fcn_1xb4-600it_demo-shapes2d-64x64.py')


class _Evil:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def _good_bytes():
    buf = io.BytesIO()
    torch.save({'state_dict': {'w': torch.arange(64, dtype=torch.float32)}, 'meta': {}}, buf)
    return buf.getvalue()


def _flipped(data: bytes) -> bytes:
    """Flip one byte inside the tensor's stored data (not in any header)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = next(i for i in archive.infolist() if '/data/' in i.filename)
    header = data[info.header_offset:info.header_offset + 30]
    start = (
        info.header_offset + 30 + int.from_bytes(header[26:28], 'little') +
        int.from_bytes(header[28:30], 'little'))
    out = bytearray(data)
    out[start + 17] ^= 0x40
    return bytes(out)


def _write(tmp_path, kind):
    path = tmp_path / f'{kind}.pth'
    good = _good_bytes()
    if kind == 'missing':
        return str(path)
    if kind == 'malicious':
        torch.save({'state_dict': {}, 'x': _Evil(tmp_path / 'pwned')}, str(path))
        return str(path)
    data = {
        'empty': b'',
        'truncated': good[:len(good) // 2],
        'random': b'\x13' + np.random.default_rng(0).bytes(3000),
        'text': b'model: resnet50\nepochs: 12\n',
        'flipped': _flipped(good)
    }[kind]
    path.write_bytes(data)
    return str(path)


# kind -> (error, words its message must hold)
CASES = {
    'missing': (FileNotFoundError, 'does not exist'),
    'empty': (EmptyCheckpointError, 'is empty'),
    'truncated': (TruncatedCheckpointError, 'cut short'),
    'random': (NotACheckpointError, 'it is data'),
    'text': (NotACheckpointError, 'it is text'),
    'flipped': (CorruptCheckpointError, 'CRC-32'),
    'malicious': (UnsafeCheckpointError, 'system'),
}


def _core(path):
    load_checkpoint(path)


def _mmengine_loader(path):  # what --resume and load_from call
    from mmengine.runner.checkpoint import _load_checkpoint
    _load_checkpoint(path, map_location='cpu')


def _mmengine_load_into_model(path):
    from mmengine.runner.checkpoint import load_checkpoint as mm_load
    mm_load(torch.nn.Linear(2, 2), path, map_location='cpu')


def _export_tool(path):
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    try:
        import export
    finally:
        sys.path.pop(0)
    export.main([path, path + '.deploy'])


def _test_tool(path):
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    try:
        import test as test_tool
    finally:
        sys.path.pop(0)
    test_tool.main([CONFIG_2D, path, '--work-dir', os.path.dirname(path) + '/eval'])


ENTRY_POINTS = {
    'core.load_checkpoint': _core,
    'mmengine _load_checkpoint': _mmengine_loader,
    'mmengine load_checkpoint': _mmengine_load_into_model,
    'tools/export.py': _export_tool,
    'tools/test.py': _test_tool
}


@pytest.mark.parametrize('entry', sorted(ENTRY_POINTS))
@pytest.mark.parametrize('kind', sorted(CASES))
def test_each_bad_file_gets_its_own_error_at_each_entry_point(tmp_path, kind, entry):
    path = _write(tmp_path, kind)
    error, words = CASES[kind]
    with pytest.raises(error, match=words) as info:
        ENTRY_POINTS[entry](path)
    assert os.path.basename(path) in str(info.value)
    assert 'weights_only=False' not in str(info.value)
    assert not (tmp_path / 'pwned').exists()


def test_the_errors_are_distinct_classes():
    classes = [c for c, _ in CASES.values()]
    assert len(set(classes) - {NotACheckpointError}) == len(classes) - 2


def test_a_good_file_passes_the_check(tmp_path):
    path = tmp_path / 'good.pth'
    path.write_bytes(_good_bytes())
    assert check_checkpoint_file(path) == 'zip'
    assert torch.equal(load_checkpoint(path)['state_dict']['w'], torch.arange(64.))


def test_legacy_format_still_loads(tmp_path):
    path = tmp_path / 'legacy.pth'
    torch.save({'w': torch.ones(3)}, str(path), _use_new_zipfile_serialization=False)
    assert check_checkpoint_file(path) == 'legacy'
    assert torch.equal(load_checkpoint(path)['w'], torch.ones(3))


def test_empty_history_buffer_and_empty_arrays_load(tmp_path):
    from mmengine.logging import HistoryBuffer, MessageHub
    hub = MessageHub.get_instance('empty-buffer-test')
    hub.update_scalar('train/loss', 1.0)
    path = tmp_path / 'hub.pth'
    torch.save(
        {
            'message_hub': hub.state_dict(),
            'buffer': HistoryBuffer(),
            'empty': np.array([]),
            'empty2d': np.zeros((0, 3), np.float32)
        }, str(path))
    loaded = load_checkpoint(path)
    assert loaded['empty'].shape == (0, ) and loaded['empty2d'].shape == (0, 3)
    assert len(loaded['buffer']._log_history) == 0 and len(loaded['buffer']._count_history) == 0
    assert loaded['message_hub']['log_scalars']['train/loss'].current() == 1.0


def test_bytes_of_a_number_is_refused(tmp_path):

    class Bomb:

        def __reduce__(self):
            return (bytes, (10**3, ))

    path = tmp_path / 'bomb.pth'
    torch.save({'x': Bomb()}, str(path))
    with pytest.raises(UnsafeCheckpointError, match='bytes'):
        load_checkpoint(path)


def test_test_tool_refuses_another_models_checkpoint(tmp_path):
    path = str(tmp_path / 'other.pth')
    save_checkpoint({'state_dict': {'fc.weight': torch.zeros(2, 2)}}, path)
    with pytest.raises(
            CheckpointMismatchError,
            match=r'other.pth.*does not fit EncoderDecoder.*missing.*1 unexpected '
            r'\(fc.weight\)'):
        _test_tool(path)


def test_mismatch_allows_training_only_parts_and_names_shapes():
    from torch import nn

    from plugins.core.checkpoint import check_state_dict_matches

    class Net(nn.Module):
        training_only_modules = ('teacher', )

        def __init__(self):
            super().__init__()
            self.body, self.teacher = nn.Linear(2, 3), nn.Linear(2, 2)

    net = Net()
    state = {k: v for k, v in net.state_dict().items() if not k.startswith('teacher.')}
    check_state_dict_matches(net, {'state_dict': state})  # exported weights: fine
    check_state_dict_matches(net, {f'module.{k}': v for k, v in net.state_dict().items()})
    state['body.weight'] = torch.zeros(4, 2)
    with pytest.raises(
            CheckpointMismatchError,
            match=r'1 of another shape \(body.weight '
            r'\(4, 2\) vs \(3, 2\)\)'):
        check_state_dict_matches(net, state, 'w.pth')


def test_saved_files_get_the_usual_mode_and_stale_partials_go(tmp_path):
    path = tmp_path / 'ckpt.pth'
    stale = tmp_path / '.ckpt.pth.abc123.partial'
    stale.write_bytes(b'half')
    save_checkpoint({'w': torch.ones(1)}, path)
    mask = os.umask(0)
    os.umask(mask)
    assert (os.stat(path).st_mode & 0o777) == (0o666 & ~mask)
    assert not stale.exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith('.partial')]


_KILL_SCRIPT = textwrap.dedent('''
    import os, signal, sys
    import torch
    from torch import nn
    sys.path.insert(0, {root!r})
    import plugins  # noqa
    from mmengine.model import BaseModel
    from mmengine.runner import Runner
    import plugins.core.checkpoint as ck

    class Model(BaseModel):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 1)
        def forward(self, x, mode='tensor'):
            return dict(loss=self.fc(x).pow(2).mean())

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 4
        def __getitem__(self, i):
            return dict(x=torch.ones(3) * i)

    real = ck.atomic_write_bytes
    def write(data, path):
        if os.path.basename(str(path)) == 'epoch_2.pth':
            # die halfway through writing the second checkpoint
            with open(os.path.join(os.path.dirname(str(path)), '.epoch_2.pth.x.partial'), 'wb') as f:
                f.write(data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        real(data, path)
    ck.atomic_write_bytes = write
    import plugins.core.mmengine as ad
    ad.atomic_write_bytes = write
    import plugins.core.mmengine.checkpoint as cm
    cm.atomic_write_bytes = write
    Runner(model=Model(), work_dir=sys.argv[1],
           train_dataloader=dict(dataset=Data(), batch_size=2, num_workers=0,
                                 sampler=dict(type='DefaultSampler', shuffle=False),
                                 collate_fn=dict(type='default_collate')),
           train_cfg=dict(by_epoch=True, max_epochs=3),
           optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
           default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1,
                                              max_keep_ckpts=1))).train()
''')


def test_a_kill_while_saving_with_max_keep_ckpts_1_keeps_the_previous_checkpoint(tmp_path):
    script = tmp_path / 'run.py'
    script.write_text(_KILL_SCRIPT.format(root=ROOT))
    work = tmp_path / 'work'
    proc = subprocess.run([sys.executable, str(script), str(work)],
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    last = (work / 'last_checkpoint').read_text().strip()
    assert os.path.basename(last) == 'epoch_1.pth'
    assert load_checkpoint(last)['meta']['epoch'] == 1
    assert (work / '.epoch_2.pth.x.partial').exists()
    # configs saying 'CheckpointHook' get the safe hook, which removes such
    # partial files when training (or resuming) starts
    from mmengine.registry import HOOKS

    from plugins.core.checkpoint import remove_stale_partials
    assert type(HOOKS.build(dict(type='CheckpointHook', interval=1))).__name__ == \
        'SafeCheckpointHook'
    assert remove_stale_partials(str(work)) == [str(work / '.epoch_2.pth.x.partial')]


def test_the_host_hook_alone_would_have_lost_the_checkpoint(tmp_path):
    """The same kill with mmengine's own ordering: the old file is gone first."""
    from mmengine.hooks import CheckpointHook

    from plugins.core.mmengine.checkpoint import SafeCheckpointHook
    assert issubclass(SafeCheckpointHook, CheckpointHook)
    removed_before_save = []

    class Backend:

        def join_path(self, *parts):
            return os.path.join(*parts)

        def isfile(self, path):
            return True

        def remove(self, path):
            removed_before_save.append(path)

    class Crash(Exception):
        pass

    def save_checkpoint(*args, **kwargs):
        raise Crash  # the process dies while writing

    from collections import deque
    from types import SimpleNamespace
    runner = SimpleNamespace(
        work_dir=str(tmp_path),
        save_checkpoint=save_checkpoint,
        message_hub=SimpleNamespace(update_info=lambda *a: None))
    for cls, expected in ((CheckpointHook, ['epoch_1.pth']), (SafeCheckpointHook, [])):
        removed_before_save.clear()
        hook = cls(interval=1, max_keep_ckpts=1)
        hook.file_backend, hook.out_dir, hook.keep_ckpt_ids = Backend(), str(tmp_path), deque([1],
                                                                                              1)
        hook.filename_tmpl = 'epoch_{}.pth'
        with pytest.raises(Crash):
            hook._save_checkpoint_with_step(runner, 2, {})
        assert [os.path.basename(p) for p in removed_before_save] == expected, cls


def test_resume_finds_the_newest_checkpoint_without_last_checkpoint(tmp_path):
    from runner_setup import latest_checkpoint
    assert latest_checkpoint(str(tmp_path / 'nothing')) is None
    assert latest_checkpoint(str(tmp_path)) is None
    for name in ('epoch_2.pth', 'epoch_10.pth', 'epoch_9.pth', 'best_coco.pth', 'x.pth'):
        (tmp_path / name).write_bytes(b'x')
    # killed after writing epoch_10.pth, before updating last_checkpoint
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_10.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_9.pth'))
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_9.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'gone.pth'))
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_10.pth')
