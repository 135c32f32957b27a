"""Device checks without a GPU.

With the default device set to ``meta``, a tensor made without an explicit
device (``torch.arange(n)``, ``torch.tensor(x)``, ``torch.zeros(...)``) lands
on ``meta`` while the inputs are on the CPU; :func:`on_input_device` names the
call that made it. On a GPU the same call would put that tensor on the CPU,
then fail or copy.

The backward passes of custom autograd Functions run outside the default
device context, so they are not covered here.
"""
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ['on_input_device']


def _has_meta(values) -> bool:
    flat = []
    for v in values:
        flat.extend(v if isinstance(v, (tuple, list)) else (v, ))
    return any(isinstance(t, torch.Tensor) and t.is_meta for t in flat)


class _MadeOnMeta(TorchFunctionMode):
    """Names the torch functions whose result is on ``meta``."""

    def __init__(self, made):
        super().__init__()
        self.made = made

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if _has_meta([out]) and not _has_meta(list(args) + list((kwargs or {}).values())):
            self.made.append(getattr(func, '__name__', str(func)))
        return out


class _UsedWithInputs(TorchDispatchMode):
    """Stops at the first op that reads a ``meta`` tensor."""

    def __init__(self, made):
        super().__init__()
        self.made = made

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if _has_meta(list(args) + list((kwargs or {}).values())):
            raise AssertionError(f'tensors made without the input device by {self.made}, '
                                 f'then used by {func}')
        return func(*args, **(kwargs or {}))


def on_input_device(fn):
    """Run ``fn()`` (inputs made beforehand, on the CPU); fail naming any call
    that made a tensor without the input device.

    Raises:
        AssertionError: Naming the calls, at the first op that uses such a
            tensor or at the end.
    """
    made = []
    with torch.device('meta'), _MadeOnMeta(made), _UsedWithInputs(made):
        fn()
    assert made == [], f'tensors made without the input device by {made}'
