"""DSD's two config dicts, as every host reads them.

    dsd_taps=dict(preset='dynunet', probe_size=None),   # where the heads attach
    loss_dsd=dict(type='DSDLoss', temperature=3.0, alpha=1.0, strategy='straightforward')

The loss is built from the host's registry with the taps passed in, so its keys
are checked against :class:`~plugins.dsd.losses.DSDLoss` (a typo names the
nearest key). The single ``dsd=dict(...)`` block of earlier versions is still
read, with a ``DeprecationWarning`` that shows the two dicts it becomes.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, Mapping, Optional, Tuple

from ..core.options import build_registered, check_keys

__all__ = ['TAPS_KEYS', 'split_legacy', 'check_taps_options', 'build_dsd_loss']

#: the keys of ``dsd_taps``: where the heads attach, not how the loss is computed
TAPS_KEYS = ('preset', 'probe_size')


def split_legacy(dsd: Optional[Mapping[str, Any]], dsd_taps: Optional[Mapping[str, Any]],
                 loss_dsd: Optional[Mapping[str, Any]],
                 what: str) -> Tuple[Optional[Mapping[str, Any]], Optional[Mapping[str, Any]]]:
    """The host's ``(dsd_taps, loss_dsd)``, from ``dsd=dict(...)`` of earlier
    versions when that is given.

    ``mode`` becomes the loss's ``strategy``; the taps keys go to
    ``dsd_taps``; everything else to ``loss_dsd`` (checked when it is built).

    Raises:
        TypeError: If ``dsd`` is not a mapping.
        ValueError: If ``dsd`` comes with ``dsd_taps`` or ``loss_dsd``.
    """
    if dsd is None:
        return dsd_taps, loss_dsd
    if dsd_taps is not None or loss_dsd is not None:
        prefix = what.rpartition('.')[0]
        raise ValueError(f'{what} is the deprecated form of {prefix}.dsd_taps and '
                         f'{prefix}.loss_dsd: set one or the other')
    if not isinstance(dsd, Mapping):
        raise TypeError(f'{what} must be a dict, got {type(dsd).__name__}')
    taps = {k: v for k, v in dsd.items() if k in TAPS_KEYS}
    loss = {('strategy' if k == 'mode' else k): v for k, v in dsd.items() if k not in TAPS_KEYS}
    loss = dict(type='DSDLoss', **loss)
    warnings.warn(
        f'{what}=dict(...) is deprecated: write dsd_taps={taps!r} and '
        f'loss_dsd={loss!r}',
        DeprecationWarning,
        stacklevel=3)
    return taps, loss


def check_taps_options(options: Optional[Mapping[str, Any]], what: str) -> Dict[str, Any]:
    """The ``dsd_taps`` dict, keys checked.

    Raises:
        ValueError: On an unknown key (naming the nearest).
    """
    check_keys(options, TAPS_KEYS, what)
    return dict(options or {})


def build_dsd_loss(options: Optional[Mapping[str, Any]],
                   taps: Any,
                   registry: Any,
                   what: str,
                   defaults: Optional[Mapping[str, Any]] = None) -> Any:
    """Build ``loss_dsd`` (``type`` defaults to ``'DSDLoss'``) for ``taps``.

    Args:
        options (Mapping | None): The user's dict.
        taps: The :class:`~plugins.dsd.DSDTaps` the loss reads.
        registry: The host's ``MODELS`` registry.
        what (str): How errors name the dict, e.g. ``'model.loss_dsd'``.
        defaults (Mapping, optional): Host defaults under the user's keys
            (mmseg: ``ignore_index=255``).

    Raises:
        KeyError: If the type is not registered.
        ValueError: On an unknown key, or one the host sets (``taps``).
    """
    cfg = dict(defaults or {})
    cfg.update(options or {})
    return build_registered(cfg, 'DSDLoss', registry, what, default_args=dict(taps=taps))
