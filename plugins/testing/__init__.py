"""Synthetic datasets in the real on-disk formats, for tests, the demo and
``tools/data/make_demo_data.py``.

Each maker writes what the matching reader expects of a downloaded dataset
(COCO json, mmseg folders, an MSD task, a nuScenes tree the official devkit
loads, SemanticKITTI sequences, XD-Violence features), deterministically from
a seed. Library code never imports this package; ``import plugins`` does not
load it.
"""
