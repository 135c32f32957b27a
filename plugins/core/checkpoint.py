"""Safe checkpoint loading, atomic saving and export of deployable weights.

Loading never unpickles arbitrary code: it uses ``torch.load(weights_only=True)``
with a narrow allow-list of the types that mmengine training checkpoints hold
(``HistoryBuffer`` of the message hub, numpy arrays and scalars). mmengine's
``HistoryBuffer`` pickles its statistics methods as ``getattr(HistoryBuffer,
'min')``; allowing ``builtins.getattr`` wholesale would let a checkpoint reach
any attribute of any allowed object (and from there ``os.system``), so a
restricted ``getattr`` that only answers those method look-ups stands in its
place.
"""
from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import io
import os
import pickle
import tempfile
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

__all__ = [
    'UnsafeCheckpointError', 'allow_types', 'allow_getattr', 'register_numpy_types',
    'load_checkpoint', 'save_checkpoint', 'atomic_write_bytes',
    'export_state_dict', 'training_only_prefixes'
]

PathLike = Union[str, os.PathLike]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint references code outside the allow-list; it was not loaded."""


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


def allow_getattr(cls: type, names: Union[Iterable[str],
                                          Callable[[str], bool]]) -> None:
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
    torch.serialization.add_safe_globals([(_restricted_getattr,
                                           'builtins.getattr')])


def allow_types(types: Sequence[Any]) -> None:
    """Add classes or functions to the ``weights_only`` allow-list."""
    torch.serialization.add_safe_globals(list(types))


def register_numpy_types() -> None:
    """Allow numpy arrays, scalars and dtypes (as in mmengine checkpoints)."""
    global _registered_numpy
    if _registered_numpy:
        return
    import numpy as np
    items: List[Any] = [np.ndarray, np.dtype]
    multiarray = getattr(np, '_core', None)
    multiarray = (multiarray.multiarray if multiarray is not None
                  and hasattr(multiarray, 'multiarray') else np.core.multiarray)
    for fn_name in ('_reconstruct', 'scalar'):
        fn = getattr(multiarray, fn_name)
        # numpy 1.x pickles under numpy.core, numpy 2.x under numpy._core.
        for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
            items.append((fn, f'{module}.{fn_name}'))
    codes = np.typecodes['AllInteger'] + np.typecodes['AllFloat'] + '?'
    items.extend({type(np.dtype(c)) for c in codes})
    torch.serialization.add_safe_globals(items)
    _registered_numpy = True


def load_checkpoint(path: PathLike, map_location: Any = 'cpu') -> Any:
    """Load a checkpoint without executing code from it.

    Args:
        path (str | PathLike): The file.
        map_location: As for :func:`torch.load`.

    Returns:
        The loaded object (usually a dict with ``state_dict``).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        UnsafeCheckpointError: If the file references a global outside the
            allow-list (pickled code); nothing from it is executed.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist')
    register_numpy_types()
    if importlib.util.find_spec('mmengine') is not None:
        # mmengine training checkpoints hold its HistoryBuffer
        importlib.import_module('plugins.core.mmengine_adapter')
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except UnsafeCheckpointError as err:
        raise UnsafeCheckpointError(f'{path}: {err}') from None
    except pickle.UnpicklingError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if any(
            w in ln for w in ('GLOBAL', 'allow-list', 'Unsupported'))),
                      lines[-1] if lines else 'unpickling failed')
        raise UnsafeCheckpointError(
            f'{path}: refused to load: {reason.rstrip(".")}. The file holds '
            f'pickled objects outside the allow-list; if you trust them, add '
            f'their types with plugins.core.checkpoint.allow_types') from None


def atomic_write_bytes(data: bytes, path: PathLike) -> None:
    """Write ``data`` to ``path`` so that a kill leaves old or new, never half.

    The bytes go to a temporary file in the same folder, are flushed to disk,
    and the file is renamed over ``path`` (atomic on POSIX and Windows).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.',
                               suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
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
    if any(ch in pattern for ch in '*?['):
        return fnmatch.fnmatchcase(key, pattern)
    return key == pattern or key.startswith(pattern + '.')


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
        drop (Sequence[str]): Module prefixes (``'teacher'`` drops
            ``teacher.*``) or glob patterns to remove. For a model, the
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
        out[new_key] = (value.detach().cpu()
                        if isinstance(value, torch.Tensor) else value)
    if not out:
        raise ValueError(f'export left no tensors (dropped {len(dropped)}: '
                         f'{dropped[:5]}...); check drop/keep/strip_prefix')
    return out, dropped
