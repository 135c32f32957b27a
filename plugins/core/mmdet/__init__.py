"""Core pieces for mmdet users; imported once ``mmdet.datasets`` is imported.

``CocoDataset`` (the name every COCO config uses) becomes
:class:`CheckedCocoDataset`: the same dataset, except that an annotation whose
``category_id`` is not among the file's categories is an error naming the file,
the annotation and the image (mmdet drops such annotations silently, so boxes
vanish from training), and an unreadable or truncated annotation file is an
error naming the file. Categories left out on purpose through the config's
``metainfo.classes`` are still filtered as before.
"""
from __future__ import annotations

import json
from typing import List, Optional, Set

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS

__all__ = ['CheckedCocoDataset']


class CheckedCocoDataset(CocoDataset):
    """mmdet's ``CocoDataset`` with checked annotation files.

    Raises:
        ValueError: From ``load_data_list``, on invalid JSON or on an
            annotation with an unknown ``category_id`` (names the file).
    """

    _file_categories: Optional[Set[int]] = None

    def load_data_list(self) -> List[dict]:
        self._file_categories = None
        try:
            return super().load_data_list()
        except json.JSONDecodeError as err:
            raise ValueError(f'annotation file {self.ann_file} is not valid JSON: {err.msg} '
                             f'(line {err.lineno}, column {err.colno}); a truncated '
                             f'file?') from None
        finally:
            self._file_categories = None

    def parse_data_info(self, raw_data_info: dict):
        if self._file_categories is None:
            self._file_categories = set(self.coco.cats)
        for ann in raw_data_info['raw_ann_info']:
            if ann.get('category_id') not in self._file_categories:
                image = raw_data_info['raw_img_info'].get('file_name')
                raise ValueError(
                    f'annotation file {self.ann_file}: annotation {ann.get("id")} of image '
                    f'{image!r} has category_id {ann.get("category_id")}, which is not among '
                    f'the file\'s categories {sorted(self._file_categories)}')
        return super().parse_data_info(raw_data_info)


def _register() -> None:
    if DATASETS.get('CocoDataset') is not CheckedCocoDataset:
        DATASETS.register_module(name='CocoDataset', module=CheckedCocoDataset, force=True)
    if 'CheckedCocoDataset' not in DATASETS.module_dict:
        DATASETS.register_module(module=CheckedCocoDataset)


_register()
