"""Safe checkpoint loading, atomic saving and export of deployable weights.

Loading never unpickles arbitrary code: it uses ``torch.load(weights_only=True)``
with a narrow allow-list of the types that mmengine training checkpoints hold
(``HistoryBuffer`` of the message hub, numpy arrays and scalars). mmengine's
``HistoryBuffer`` pickles its statistics methods as ``getattr(HistoryBuffer,
'min')``; allowing ``builtins.getattr`` wholesale would let a checkpoint reach
any attribute of any allowed object (and from there ``os.system``), so a
restricted ``getattr`` that only answers those method look-ups stands in its
place.

Before unpickling, :func:`check_checkpoint_file` tells a damaged file from an
unsafe one: missing, empty, truncated, not a checkpoint at all, or corrupted
bytes (every member's CRC-32 is verified, which torch's own reader skips) each
raise their own error naming the file.
"""
from __future__ import annotations

import fnmatch
import glob
import importlib
import importlib.util
import io
import os
import pickle
import tempfile
import zipfile
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

__all__ = [
    'UnsafeCheckpointError', 'CheckpointFileError', 'EmptyCheckpointError',
    'TruncatedCheckpointError', 'CorruptCheckpointError', 'NotACheckpointError',
    'check_checkpoint_file', 'remove_stale_partials', 'check_state_dict_matches',
    'CheckpointMismatchError', 'unmatched_patterns', 'allow_types', 'allow_getattr',
    'register_numpy_types', 'load_checkpoint', 'save_checkpoint', 'atomic_write_bytes',
    'export_state_dict', 'training_only_prefixes'
]

PathLike = Union[str, os.PathLike]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint references code outside the allow-list; it was not loaded."""


class CheckpointFileError(ValueError):
    """The file is damaged or is no checkpoint (base of the four below)."""


class EmptyCheckpointError(CheckpointFileError):
    """The file has 0 bytes."""


class TruncatedCheckpointError(CheckpointFileError):
    """The file ends early (an interrupted copy, download or write)."""


class CorruptCheckpointError(CheckpointFileError):
    """The file is complete but bytes inside it changed (CRC mismatch)."""


class NotACheckpointError(CheckpointFileError):
    """The file is neither a torch zip archive nor a legacy torch file."""


class CheckpointMismatchError(ValueError):
    """A checkpoint's tensors do not fit the model (another model's weights)."""


_ZIP_MAGIC = b'PK\x03\x04'
_PICKLE_MAGIC = b'\x80'  # protocol ≥ 2: the legacy (pre-1.6) torch format


def check_checkpoint_file(path: PathLike) -> str:
    """Check that ``path`` is a complete, intact torch checkpoint file.

    Reads the whole file once (CRC-32 of every archive member); nothing is
    unpickled.

    Args:
        path (str | PathLike): The file.

    Returns:
        str: ``'zip'`` (torch ≥ 1.6 format) or ``'legacy'``.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        IsADirectoryError: If ``path`` is a folder.
        EmptyCheckpointError, TruncatedCheckpointError,
        CorruptCheckpointError, NotACheckpointError: Each naming the file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist')
    if os.path.isdir(path):
        raise IsADirectoryError(f'checkpoint {path!r} is a folder, not a file')
    size = os.path.getsize(path)
    if size == 0:
        raise EmptyCheckpointError(f'checkpoint {path!r} is empty (0 bytes): a save or '
                                   f'copy that never wrote anything')
    with open(path, 'rb') as f:
        head = f.read(4)
    if head.startswith(_PICKLE_MAGIC) and not head.startswith(_ZIP_MAGIC):
        return 'legacy'
    if head != _ZIP_MAGIC:
        kind = 'text' if _looks_like_text(path) else 'data'
        raise NotACheckpointError(
            f'{path!r} is not a checkpoint: it is {kind} ({size} bytes starting with '
            f'{head!r}), neither a torch zip archive nor a legacy torch file')
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            try:
                bad = archive.testzip()
            except (EOFError, zipfile.BadZipFile, OSError) as err:
                raise TruncatedCheckpointError(
                    f'checkpoint {path!r} ({size} bytes) ends inside its data ({err}): '
                    f'the file is cut short') from None
    except zipfile.BadZipFile:
        raise TruncatedCheckpointError(
            f'checkpoint {path!r} ({size} bytes) has no archive directory at its end: the '
            f'file is cut short (an interrupted copy, download or save)') from None
    if bad is not None:
        raise CorruptCheckpointError(
            f'checkpoint {path!r} is corrupted: the CRC-32 of {bad!r} does not match '
            f'(bytes changed on disk or in transfer); restore it from a good copy')
    if not any(n.endswith('/data.pkl') or n == 'data.pkl' for n in names):
        raise NotACheckpointError(f'{path!r} is a zip archive but not a torch checkpoint '
                                  f'(no data.pkl among {names[:5]})')
    return 'zip'


def _looks_like_text(path: str) -> bool:
    with open(path, 'rb') as f:
        sample = f.read(512)
    try:
        sample.decode('utf-8')
    except UnicodeDecodeError:
        return False
    return True


# (class) -> names that the restricted getattr may return from it.
_GETATTR_ALLOWED: Dict[type, Callable[[str], bool]] = {}
_registered_numpy = False


def _restricted_getattr(obj: Any, name: str, *default: Any) -> Any:
    """Stand-in for ``builtins.getattr`` inside ``weights_only`` loads."""
    check = _GETATTR_ALLOWED.get(obj) if isinstance(obj, type) else None
    if check is None or not isinstance(name, str) or not check(name):
        owner = getattr(obj, '__qualname__', type(obj).__qualname__)
        raise UnsafeCheckpointError(
            f'the checkpoint asks for attribute {name!r} of {owner}, which is '
            f'not on the allow-list; refusing to load it')
    return getattr(obj, name, *default)


def _restricted_bytes(*args: Any) -> bytes:
    """Stand-in for ``builtins.bytes`` inside ``weights_only`` loads.

    numpy arrays without elements and mmengine's empty ``HistoryBuffer``
    pickle ``bytes()`` under protocol 2. Only copies of existing data are
    made; ``bytes(n)`` with an integer (a checkpoint asking for ``n`` zero
    bytes) is refused.
    """
    if not args:
        return b''
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray, list, tuple)):
        return bytes(args[0])
    if len(args) in (2, 3) and isinstance(args[0], str) and all(isinstance(a, str) for a in args):
        return bytes(*args)
    raise UnsafeCheckpointError(f'the checkpoint calls bytes() with {type(args[0]).__name__} '
                                f'arguments, which is not on the allow-list; refusing to load it')


def allow_getattr(cls: type, names: Union[Iterable[str], Callable[[str], bool]]) -> None:
    """Let checkpoints look up the given attributes of ``cls``.

    Args:
        cls (type): An already allow-listed class.
        names (Iterable[str] | Callable[[str], bool]): The permitted attribute
            names, or a predicate over them.
    """
    if callable(names):
        check = names
    else:
        allowed = frozenset(names)
        check = allowed.__contains__
    _GETATTR_ALLOWED[cls] = check
    torch.serialization.add_safe_globals([(_restricted_getattr, 'builtins.getattr')])


def allow_types(types: Sequence[Any]) -> None:
    """Add classes or functions to the ``weights_only`` allow-list."""
    torch.serialization.add_safe_globals(list(types))


def register_numpy_types() -> None:
    """Allow numpy arrays, scalars and dtypes (as in mmengine checkpoints),
    and ``bytes()`` of existing data (empty arrays pickle it)."""
    global _registered_numpy
    if _registered_numpy:
        return
    import numpy as np
    items: List[Any] = [np.ndarray, np.dtype]
    multiarray = getattr(np, '_core', None)
    multiarray = (
        multiarray.multiarray
        if multiarray is not None and hasattr(multiarray, 'multiarray') else np.core.multiarray)
    for fn_name in ('_reconstruct', 'scalar'):
        fn = getattr(multiarray, fn_name)
        # numpy 1.x pickles under numpy.core, numpy 2.x under numpy._core.
        for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
            items.append((fn, f'{module}.{fn_name}'))
    codes = np.typecodes['AllInteger'] + np.typecodes['AllFloat'] + '?'
    items.extend({type(np.dtype(c)) for c in codes})
    items.append((_restricted_bytes, 'builtins.bytes'))
    torch.serialization.add_safe_globals(items)
    _registered_numpy = True


def _import_host_of_refused_global(message: str) -> bool:
    """Import the host library of the global a weights-only load refused, if
    it is a host whose plugin adapter waits for its import (the adapter then
    allow-lists the host's safe types). Returns whether it imported one.

    Only watched hosts are imported (mmengine, mmdet, mmseg): a file cannot
    make this import an arbitrary installed package.
    """
    import re

    from .lazy import watched_roots
    found = re.search(r'GLOBAL ([A-Za-z_][\w.]*)', message)
    if found is None:
        return False
    root = found.group(1).split('.')[0]
    if root not in watched_roots() or importlib.util.find_spec(root) is None:
        return False
    importlib.import_module(root)
    return True


def load_checkpoint(path: PathLike, map_location: Any = 'cpu') -> Any:
    """Load a checkpoint without executing code from it.

    The file is checked first (:func:`check_checkpoint_file`), then loaded
    with ``torch.load(weights_only=True)`` and this module's allow-list.

    Args:
        path (str | PathLike): The file.
        map_location: As for :func:`torch.load`.

    Returns:
        The loaded object (usually a dict with ``state_dict``).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        CheckpointFileError: If the file is empty, truncated, corrupted or no
            checkpoint (a subclass for each).
        UnsafeCheckpointError: If the file references a global outside the
            allow-list (pickled code); nothing from it is executed.
    """
    path = os.fspath(path)
    kind = check_checkpoint_file(path)
    register_numpy_types()
    try:
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as err:
            # a host's type (mmengine's HistoryBuffer in training checkpoints)
            # whose host is installed but not imported yet: importing the host
            # runs its adapter, which allow-lists its types; then load again
            if not _import_host_of_refused_global(str(err)):
                raise
            return torch.load(path, map_location=map_location, weights_only=True)
    except UnsafeCheckpointError as err:
        raise UnsafeCheckpointError(f'{path}: {err}') from None
    except pickle.UnpicklingError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        unsafe = next((ln for ln in lines if any(
            w in ln for w in ('GLOBAL', 'allow-list', 'Unsupported global'))), None)
        if unsafe is None:
            raise CorruptCheckpointError(
                f'checkpoint {path!r} ({kind} format) cannot be unpickled: '
                f'{lines[-1] if lines else err}') from None
        raise UnsafeCheckpointError(
            f'{path}: refused to load: {unsafe.rstrip(".")}. The file holds '
            f'pickled objects outside the allow-list; if you trust them, add '
            f'their types with plugins.core.checkpoint.allow_types') from None
    except (EOFError, RuntimeError, ValueError, KeyError, IndexError) as err:
        what = 'is cut short' if isinstance(err, EOFError) else 'is damaged'
        cls = TruncatedCheckpointError if isinstance(err, EOFError) else CorruptCheckpointError
        raise cls(f'checkpoint {path!r} ({kind} format) {what}: '
                  f'{type(err).__name__}: {err}') from None


_PARTIAL = '.partial'


def _default_mode() -> int:
    """``0o666`` less the process umask (what ``open(path, 'w')`` gives)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def remove_stale_partials(folder: PathLike, name: Optional[str] = None) -> List[str]:
    """Delete the temporary files that killed atomic writes left in ``folder``.

    Only call it where no other process is writing (the checkpoint hook does
    so on the main process when training starts).

    Args:
        name (str, optional): Only the partial files of this target file.

    Returns:
        list[str]: The removed paths.
    """
    pattern = '.*' if name is None else glob.escape('.' + name + '.') + '*'
    removed = []
    for tmp in glob.glob(os.path.join(glob.escape(os.fspath(folder)), pattern + _PARTIAL)):
        try:
            os.unlink(tmp)
            removed.append(tmp)
        except OSError:
            pass
    return removed


def atomic_write_bytes(data: bytes, path: PathLike) -> None:
    """Write ``data`` to ``path`` so that a kill leaves old or new, never half.

    The bytes go to a temporary file ``.<name>.<random>.partial`` in the same
    folder, are flushed to disk, get the usual file mode (``0o666`` less the
    umask) and the file is renamed over ``path`` (atomic on POSIX and
    Windows). Partial files of earlier, killed writes of ``path`` are removed.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    name = os.path.basename(path)
    remove_stale_partials(folder, name)
    fd, tmp = tempfile.mkstemp(prefix='.' + name + '.', suffix=_PARTIAL, dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def save_checkpoint(obj: Any, path: PathLike) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(buffer.getvalue(), path)


def training_only_prefixes(model: nn.Module) -> List[str]:
    """State-dict prefixes that submodules declare as training-only.

    A module marks parts it needs only for training (teachers, distillation
    heads) with a class or instance attribute
    ``training_only_modules = ('teacher', 'dsd_heads')``; names are relative to
    that module.
    """
    prefixes = []
    for name, module in model.named_modules():
        for child in getattr(module, 'training_only_modules', ()) or ():
            prefixes.append(f'{name}.{child}' if name else child)
    return prefixes


def _matches(key: str, pattern: str) -> bool:
    """A glob over the whole key, or a module path: ``dsd_heads`` matches
    ``dsd_heads.*`` and, nested, ``backbone.dsd_heads.*`` (whole path
    segments only: ``a`` never matches ``ab.*``)."""
    if any(ch in pattern for ch in '*?['):
        return fnmatch.fnmatchcase(key, pattern)
    return (key == pattern or key.startswith(pattern + '.') or key.endswith('.' + pattern)
            or ('.' + pattern + '.') in key)


def unmatched_patterns(keys: Sequence[str], patterns: Sequence[str]) -> List[str]:
    """The patterns (as for :func:`export_state_dict`) that match none of ``keys``."""
    return [p for p in patterns if not any(_matches(k, p) for k in keys)]


def export_state_dict(
    source: Union[nn.Module, Mapping[str, Any]],
    drop: Sequence[str] = (),
    strip_prefix: Optional[str] = None,
    keep: Optional[Sequence[str]] = None,
) -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
    """A deployable state dict without training-only tensors.

    Args:
        source (nn.Module | Mapping): A model, a state dict, or a checkpoint
            dict holding ``state_dict``.
        drop (Sequence[str]): Module paths (``'teacher'`` drops ``teacher.*``
            and nested ``*.teacher.*``) or glob patterns to remove. For a model, the
            prefixes its modules declare (:func:`training_only_prefixes`) are
            added.
        strip_prefix (str, optional): Remove this leading module path from the
            kept keys (e.g. ``'net'`` turns ``net.conv.weight`` into
            ``conv.weight``); keys without it are dropped.
        keep (Sequence[str], optional): If given, only keys under these
            prefixes or patterns are kept (applied before ``strip_prefix``).

    Returns:
        tuple: ``(state_dict, dropped_keys)``; tensors are detached and on CPU.

    Raises:
        TypeError: If ``source`` is neither a module nor a mapping.
        ValueError: If nothing is left after filtering.
    """
    patterns = list(drop)
    if isinstance(source, nn.Module):
        patterns += training_only_prefixes(source)
        state = source.state_dict()
    elif isinstance(source, Mapping):
        state = source.get('state_dict', source)
    else:
        raise TypeError(f'export_state_dict takes a module or a state dict, '
                        f'got {type(source).__name__}')
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    dropped = []
    for key, value in state.items():
        drop_it = any(_matches(key, p) for p in patterns)
        if keep is not None and not any(_matches(key, p) for p in keep):
            drop_it = True
        if strip_prefix:
            if key.startswith(strip_prefix + '.'):
                new_key = key[len(strip_prefix) + 1:]
            else:
                drop_it = True
        else:
            new_key = key
        if drop_it:
            dropped.append(key)
            continue
        out[new_key] = (value.detach().cpu() if isinstance(value, torch.Tensor) else value)
    if not out:
        raise ValueError(f'export left no tensors (dropped {len(dropped)}: '
                         f'{dropped[:5]}...); check drop/keep/strip_prefix')
    return out, dropped


def check_state_dict_matches(model: nn.Module,
                             checkpoint: Mapping[str, Any],
                             name: str = 'checkpoint') -> None:
    """Check that ``checkpoint`` holds exactly the model's tensors.

    Tensors the model declares as training-only (:func:`training_only_prefixes`)
    may be missing, as in weights exported by ``tools/export.py``. A leading
    ``module.`` (saved from a DDP wrapper) is ignored.

    Args:
        model (nn.Module): The model about to be evaluated.
        checkpoint (Mapping): A state dict or a dict holding ``state_dict``.
        name (str): How the error names the checkpoint (its path).

    Raises:
        CheckpointMismatchError: Listing the count and the first few missing,
            unexpected and wrongly shaped keys.
    """
    state = checkpoint.get('state_dict', checkpoint)
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    own = model.state_dict()
    optional = training_only_prefixes(model)
    missing = [k for k in own if k not in state and not any(_matches(k, p) for p in optional)]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f'{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}' for k in own if k in state
        and isinstance(state[k], torch.Tensor) and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    for label, keys in (('missing', missing), ('unexpected', unexpected), ('of another shape',
                                                                           shapes)):
        if keys:
            parts.append(f'{len(keys)} {label} ({", ".join(keys[:3])}'
                         f'{", ..." if len(keys) > 3 else ""})')
    raise CheckpointMismatchError(
        f'{name} does not fit {type(model).__name__} ({len(own)} tensors): '
        f'{"; ".join(parts)}. It was probably saved from another model or config')
