"""Option dicts from configs: unknown keys are errors that suggest the right one."""
from __future__ import annotations

import difflib
import json
from typing import Any, Dict, Iterable, Mapping, Optional

__all__ = ['check_keys', 'check_kwargs', 'merge_options', 'read_json', 'build_registered']


def check_keys(options: Optional[Mapping[str, Any]], known: Iterable[str], what: str) -> None:
    """Raise on keys of ``options`` that are not in ``known``.

    Args:
        options (Mapping | None): The user's dict (``None`` passes).
        known (Iterable[str]): The accepted keys.
        what (str): How the error names the dict, e.g. ``'bbox_head.loss_fgl'``.

    Raises:
        TypeError: If ``options`` is not a mapping.
        ValueError: Naming each unknown key, the closest known one when there
            is a close one (``'loss_wieght'`` → ``'loss_weight'``), and the
            known keys.
    """
    if options is None:
        return
    if not isinstance(options, Mapping):
        raise TypeError(f'{what} must be a dict, got {type(options).__name__}')
    known = sorted(known)
    unknown = [k for k in options if k not in known]
    if not unknown:
        return
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
        parts.append(f'{key!r}' + (f' (did you mean {close[0]!r}?)' if close else ''))
    raise ValueError(f'unknown key{"s" if len(unknown) > 1 else ""} in {what}: '
                     f'{", ".join(parts)}; known: {known}')


def check_kwargs(options: Optional[Mapping[str, Any]],
                 target: Any,
                 what: str,
                 exclude: Iterable[str] = ()) -> None:
    """:func:`check_keys` against the keyword arguments ``target`` accepts.

    Args:
        target: A class or function; its signature lists the known keys.
        exclude (Iterable[str]): Arguments set by the caller, not the user.
    """
    import inspect
    params = inspect.signature(target).parameters
    known = [
        n for n, p in params.items()
        if n != 'self' and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and n not in set(exclude)
    ]
    check_keys(options, known, what)


def merge_options(defaults: Mapping[str, Any], options: Optional[Mapping[str, Any]],
                  what: str) -> Dict[str, Any]:
    """``defaults`` updated with ``options``, after :func:`check_keys`."""
    check_keys(options, defaults, what)
    out = dict(defaults)
    out.update(options or {})
    return out


def build_registered(options: Optional[Mapping[str, Any]],
                     default_type: str,
                     registry: Any,
                     what: str,
                     default_args: Optional[Mapping[str, Any]] = None) -> Any:
    """Build a module from a config dict in ``registry``, ``type`` defaulting.

    ``dict(loss_weight=0.15)`` and ``dict(type='FGLLoss', loss_weight=0.15)``
    build the same thing; every other key is checked against the class's
    constructor before building, so a typo names the nearest valid key instead
    of failing deep inside the constructor (or being ignored).

    Args:
        options (Mapping | None): The user's dict (``None``: all defaults).
        default_type (str): The registered name used when ``type`` is absent.
        registry: An mmengine ``Registry`` (anything with ``get`` and ``build``).
        what (str): How errors name the dict, e.g. ``'bbox_head.loss_fgl'``.
        default_args (Mapping, optional): Arguments the host passes itself
            (DSD's taps, say); the user's dict may not set them.

    Returns:
        The built module.

    Raises:
        TypeError: If ``options`` is not a mapping.
        ValueError: If ``options`` sets a key of ``default_args``.
        KeyError: If the type is not registered, naming the closest registered names.
        ValueError: On an option the class does not accept (see :func:`check_keys`).
    """
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f'{what} must be a dict, got {type(options).__name__}')
    cfg = dict(type=default_type)
    cfg.update(options or {})
    name = cfg['type']
    cls = registry.get(name) if isinstance(name, str) else name
    if cls is None:
        known = sorted(getattr(registry, 'module_dict', {}))
        close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.6)
        raise KeyError(f'{what}.type {name!r} is not registered in the '
                       f'{getattr(registry, "name", "")} registry' +
                       (f'; did you mean {close}?' if close else ''))
    fixed = dict(default_args or {})
    taken = sorted(k for k in cfg if k in fixed)
    if taken:
        raise ValueError(f'{what} may not set {taken}: the host passes '
                         f'{"it" if len(taken) == 1 else "them"} itself')
    # ``type`` and mmengine's ``_scope_`` are the registry's keys, not the class's
    check_kwargs({
        k: v
        for k, v in cfg.items() if k not in ('type', '_scope_')
    },
                 cls,
                 what,
                 exclude=fixed)
    return registry.build(cfg, default_args=fixed) if fixed else registry.build(cfg)


def read_json(path: str, what: str = 'file') -> Any:
    """``json.load`` with errors that name the file.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: On invalid or truncated JSON (file, line, column, and
            whether the text ends early).
    """
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f'{what} {path} does not exist') from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        ends_early = err.msg.startswith('Unterminated') or err.pos >= len(text.rstrip()) - 1
        early = ' (the text ends early: a truncated file?)' if ends_early else ''
        raise ValueError(f'{what} {path} is not valid JSON: {err.msg} (line {err.lineno}, '
                         f'column {err.colno}){early}') from None
