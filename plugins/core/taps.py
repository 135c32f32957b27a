"""Record what named submodules of any ``nn.Module`` see or produce.

A *tap* is a forward hook (or forward pre-hook) on a submodule addressed by its
dotted path in ``model.named_modules()``. :class:`Taps` owns a set of taps and
removes every hook it added when closed, so the tapped network stays the stock
network: no fork, no subclass, no change to its ``state_dict``.

Example:
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    >>> with Taps(net, {'hidden': '0'}) as taps:
    ...     out = net(torch.randn(2, 4))
    ...     taps['hidden'].shape
    torch.Size([2, 3])
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

__all__ = ['TapSpec', 'Taps', 'resolve_module', 'MissingModuleError']

_WHATS = ('output', 'input')


class MissingModuleError(KeyError):
    """A dotted module path does not exist in the model.

    It derives from :class:`KeyError` so code that looks modules up in a
    mapping can catch it the usual way; its message names the bad path and the
    closest existing ones.
    """

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ''


@dataclass(frozen=True)
class TapSpec:
    """Where a tap sits and what it records.

    Attributes:
        path (str): Dotted path of the submodule, as in ``named_modules()``.
        what (str): ``'output'`` (forward hook, the module's return value) or
            ``'input'`` (forward pre-hook, a positional input).
        index (int): Which positional input to keep when ``what='input'``.
        transform (Callable | None): Optional function applied to the recorded
            value (e.g. to reshape ViT tokens into a volume).
    """

    path: str
    what: str = 'output'
    index: int = 0
    transform: Optional[Callable[[Any], Any]] = None

    def __post_init__(self) -> None:
        if self.what not in _WHATS:
            raise ValueError(f'TapSpec.what must be one of {_WHATS}, '
                             f'got {self.what!r} (path {self.path!r})')
        if self.what == 'input' and self.index < 0:
            raise ValueError(f'TapSpec.index must be >= 0, got {self.index}')


SpecLike = Union[str, TapSpec, Mapping[str, Any]]


def _as_spec(spec: SpecLike) -> TapSpec:
    if isinstance(spec, TapSpec):
        return spec
    if isinstance(spec, str):
        return TapSpec(spec)
    if isinstance(spec, Mapping):
        return TapSpec(**spec)
    raise TypeError(f'a tap is a module path, a TapSpec or a dict, got '
                    f'{type(spec).__name__}')


def resolve_module(model: nn.Module, path: str) -> nn.Module:
    """Return the submodule of ``model`` at the dotted ``path``.

    Args:
        model (nn.Module): The root module.
        path (str): Dotted path as printed by ``named_modules()``; ``''`` is
            the root itself.

    Returns:
        nn.Module: The submodule.

    Raises:
        MissingModuleError: If no submodule has that path. The message lists
            the closest existing paths.
    """
    names = dict(model.named_modules(remove_duplicate=False))
    if path in names:
        return names[path]
    close = difflib.get_close_matches(path, list(names), n=5, cutoff=0.5)
    if not close:  # fall back to siblings of the deepest existing parent
        parent = path
        while parent and parent not in names:
            parent = parent.rpartition('.')[0]
        prefix = parent + '.' if parent else ''
        close = [
            n for n in names if n.startswith(prefix) and n != parent and '.' not in n[len(prefix):]
        ][:8]
    hint = f'; closest: {", ".join(close)}' if close else ''
    raise MissingModuleError(f'{type(model).__name__} has no submodule {path!r}{hint}')


class Taps:
    """Forward-hook recorder over named submodules.

    Args:
        model (nn.Module): The network to tap. It is not modified beyond the
            hooks, which :meth:`remove` (or leaving the ``with`` block) takes
            away again.
        specs (Mapping[str, str | TapSpec | dict] | Sequence[str]): Tap name to
            where it sits. A sequence of paths uses each path as its name.
        keep (str): ``'last'`` keeps the latest value per tap; ``'all'`` keeps
            every value in call order (a module reached twice in one forward
            pass yields two entries).
        detach (bool): Record ``value.detach()`` instead of the value.
        enabled (bool): Start recording at once. :attr:`enabled` can be
            toggled later, e.g. off at inference.

    Raises:
        MissingModuleError: If a path does not exist in ``model``.
        ValueError: If ``keep`` is not ``'last'`` or ``'all'`` or a name
            repeats.
    """

    def __init__(self,
                 model: nn.Module,
                 specs: Union[Mapping[str, SpecLike], Sequence[str]],
                 keep: str = 'last',
                 detach: bool = False,
                 enabled: bool = True) -> None:
        if keep not in ('last', 'all'):
            raise ValueError(f"keep must be 'last' or 'all', got {keep!r}")
        if isinstance(specs, Mapping):
            items = [(str(k), _as_spec(v)) for k, v in specs.items()]
        else:
            items = [(p, _as_spec(p)) for p in specs]
        names = [n for n, _ in items]
        if len(set(names)) != len(names):
            raise ValueError(f'tap names repeat: {names}')
        self.model = model
        self.specs: Dict[str, TapSpec] = dict(items)
        self.keep = keep
        self.detach = detach
        self.enabled = enabled
        self._records: Dict[str, List[Any]] = {n: [] for n in self.specs}
        self._handles: List[torch.utils.hooks.RemovableHandle] = []
        modules = {
            n: resolve_module(model, s.path)
            for n, s in self.specs.items()
        }  # validate all first
        for name, spec in self.specs.items():
            self._attach(name, spec, modules[name])

    # ------------------------------------------------------------------ hooks
    def _store(self, name: str, spec: TapSpec, value: Any) -> None:
        if spec.transform is not None:
            value = spec.transform(value)
        if self.detach and isinstance(value, torch.Tensor):
            value = value.detach()
        if self.keep == 'last':
            self._records[name] = [value]
        else:
            self._records[name].append(value)

    def _attach(self, name: str, spec: TapSpec, module: nn.Module) -> None:
        if spec.what == 'output':

            def hook(mod, args, output, _n=name, _s=spec):
                if self.enabled:
                    self._store(_n, _s, output)

            handle = module.register_forward_hook(hook)
        else:

            def pre_hook(mod, args, _n=name, _s=spec):
                if self.enabled:
                    if _s.index >= len(args):
                        raise IndexError(f'tap {_n!r}: {_s.path!r} was called with '
                                         f'{len(args)} positional inputs, the tap wants '
                                         f'input {_s.index}')
                    self._store(_n, _s, args[_s.index])

            handle = module.register_forward_pre_hook(pre_hook)
        self._handles.append(handle)

    # ------------------------------------------------------------- accessors
    def __getitem__(self, name: str) -> Any:
        """The recorded value (``keep='last'``) or list (``keep='all'``).

        Raises:
            KeyError: If ``name`` is not a tap, or nothing was recorded yet.
        """
        if name not in self._records:
            raise KeyError(f'no tap named {name!r}; taps: {list(self.specs)}')
        values = self._records[name]
        if not values:
            raise KeyError(f'tap {name!r} ({self.specs[name].path}) has '
                           f'recorded nothing: did the forward pass reach it?')
        return values[-1] if self.keep == 'last' else list(values)

    def get(self, name: str, default: Any = None) -> Any:
        """Like :meth:`__getitem__` but returns ``default`` when empty."""
        values = self._records.get(name)
        if not values:
            return default
        return values[-1] if self.keep == 'last' else list(values)

    def items(self) -> Iterator:
        """Yield ``(name, value)`` for every tap that recorded something."""
        for name in self.specs:
            if self._records[name]:
                yield name, self[name]

    def __contains__(self, name: str) -> bool:
        return bool(self._records.get(name))

    def __len__(self) -> int:
        return len(self.specs)

    def clear(self) -> None:
        """Drop the recorded values (keeps the hooks)."""
        for name in self._records:
            self._records[name] = []

    def pop_all(self) -> Dict[str, Any]:
        """Return every recorded value and clear them."""
        out = dict(self.items())
        self.clear()
        return out

    # ------------------------------------------------------------- lifecycle
    @property
    def attached(self) -> bool:
        """Whether the hooks are still in place."""
        return bool(self._handles)

    def remove(self) -> None:
        """Remove every hook this object added and drop the records."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.clear()

    def __enter__(self) -> 'Taps':
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def __repr__(self) -> str:
        taps = ', '.join(f'{n}={s.what}@{s.path}' for n, s in self.specs.items())
        return f'Taps({taps}, keep={self.keep!r}, attached={self.attached})'
