"""mmengine's dataset options and wrappers work with every plugin reader."""
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def roots(tmp_path_factory):
    from plugins.testing import demo_makers
    makers = demo_makers()
    base = tmp_path_factory.mktemp('readers')
    return {
        fmt: makers[fmt](str(base / fmt), 0, True)
        for fmt in ('xdv', 'msd', 'nuscenes', 'semantickitti')
    }


def _configs(roots):
    return {
        'XDViolenceDataset':
        dict(data_root=roots['xdv'], split='train'),
        'MSDDataset':
        dict(
            task_dir=roots['msd'],  # make_demo returns the task folder
            split='train',
            num_val=1,
            roi_size=(16, 16, 16)),
        'NuScenesSLidRDataset':
        dict(data_root=roots['nuscenes'], split='mini_train', min_pairs=1, crop=(32, 64)),
        'NuScenesLidarSegDataset':
        dict(data_root=roots['nuscenes'], split='mini_train'),
        'SemanticKITTIDataset':
        dict(data_root=roots['semantickitti'], split='train'),
    }


@pytest.mark.parametrize('name', [
    'XDViolenceDataset', 'MSDDataset', 'NuScenesSLidRDataset', 'NuScenesLidarSegDataset',
    'SemanticKITTIDataset'
])
def test_lazy_init_defers_the_index_and_wrappers_accept_the_reader(roots, name):
    pytest.importorskip('nuscenes')
    from mmengine.registry import DATASETS

    import plugins  # noqa: F401
    cfg = dict(type=name, **_configs(roots)[name])
    eager = DATASETS.build(cfg)
    lazy = DATASETS.build(dict(cfg, lazy_init=True, serialize_data=True))
    assert not lazy._index_ready and lazy.metainfo  # nothing read yet, metainfo there
    assert len(lazy) == len(eager) > 0 and lazy._index_ready
    repeat = DATASETS.build(dict(type='RepeatDataset', times=2, dataset=cfg))
    assert len(repeat) == 2 * len(eager)
    concat = DATASETS.build(dict(type='ConcatDataset', datasets=[cfg, cfg]))
    assert len(concat) == 2 * len(eager)


def test_test_mode_turns_the_augmentation_off(roots):
    import torch
    from mmengine.registry import DATASETS

    import plugins  # noqa: F401
    cfgs = _configs(roots)
    msd = DATASETS.build(dict(type='MSDDataset', **cfgs['MSDDataset'], test_mode=True))
    item = msd[0]
    assert isinstance(item, dict) and item['inputs'].shape[1:] == (32, 32, 32)  # whole volume
    kitti = DATASETS.build(
        dict(type='SemanticKITTIDataset', **cfgs['SemanticKITTIDataset'], test_mode=True))
    assert kitti.augment is False
    a, b = kitti[0], kitti[0]
    assert torch.equal(a['coords'], b['coords'])  # no random rotation or flip
