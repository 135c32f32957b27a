"""The part of mmengine's dataset protocol the plugins' readers implement.

mmengine's dataset wrappers (``RepeatDataset``, ``ConcatDataset``,
``ClassBalancedDataset``) and its ``BaseDataset`` conventions expect
``full_init()``, ``metainfo`` and the options ``lazy_init``, ``serialize_data``
and ``test_mode``. Host-free: plain Python.
"""
from __future__ import annotations

__all__ = ['LazyIndex']


class LazyIndex:
    """Mixin: build the dataset's index now or at the first ``full_init()``.

    A reader sets its ``metainfo`` and options in ``__init__``, puts the work
    of reading the index (list files, a dataset json, the nuScenes tables) in
    ``_load_index()``, calls :meth:`_init_index` last, and calls
    ``self.full_init()`` at the top of ``__len__`` and ``__getitem__``.

    Options, as mmengine's ``BaseDataset`` names them:

    * ``lazy_init``: leave the index unread until ``full_init()`` (or the
      first use), e.g. inside a wrapper that builds many datasets;
    * ``test_mode``: no random augmentation, whatever the split;
    * ``serialize_data``: accepted for config compatibility; it has nothing
      to do here, because the index is a short list of names that worker
      processes share copy-on-write without serialising.
    """

    _index_ready = False
    test_mode = False

    def _init_index(self,
                    lazy_init: bool = False,
                    serialize_data: bool = False,
                    test_mode: bool = False) -> None:
        del serialize_data  # see the class docstring
        self.test_mode = bool(test_mode)
        if not lazy_init:
            self.full_init()

    def full_init(self) -> None:
        """Read the index once (mmengine's name for it)."""
        if not self._index_ready:
            self._load_index()
            self._index_ready = True

    def _load_index(self) -> None:  # pragma: no cover - every reader defines it
        raise NotImplementedError(f'{type(self).__name__} must define _load_index()')
