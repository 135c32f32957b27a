"""The demo finds its stages: one module each in tools/demo_stages/."""
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_every_stage_module_is_found_in_order():
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    try:
        from demo_stages import stages
        found = stages()
    finally:
        sys.path.remove(osp.join(ROOT, 'tools'))
    assert list(found) == ['detection', 'golsd', 'dsd', 'macil', 'slidr']
    assert all(callable(run) and run.__name__ == 'run' for run in found.values())
    assert found['golsd'].__module__ == 'demo_stages.golsd'
