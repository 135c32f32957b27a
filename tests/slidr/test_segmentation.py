"""SLidR evaluation: lidarseg data, label fraction, segmentor modes, point mIoU."""
import pytest
import torch

pytest.importorskip('nuscenes')
pytest.importorskip('mmengine')

from plugins.slidr.datasets.lidarseg import (FINE_CLASSES, NUSCENES_CLASSES, fine_to_coarse,
                                             keep_every_kth_scene)
from plugins.testing.nuscenes import make_nuscenes_synthetic

TINY = dict(layers=(1, ) * 8, planes=(8, 8, 16, 16, 16, 8, 8, 8), init_dim=8)


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    return make_nuscenes_synthetic(str(tmp_path_factory.mktemp('nus')), samples_per_scene=2)


def test_class_mapping_and_label_fraction():
    lut = fine_to_coarse(dict(enumerate(FINE_CLASSES)))
    named = {FINE_CLASSES[i]: NUSCENES_CLASSES[int(c)] for i, c in enumerate(lut)}
    assert named['vehicle.bus.rigid'] == named['vehicle.bus.bendy'] == 'bus'
    assert named['human.pedestrian.police_officer'] == 'pedestrian'
    assert named['vehicle.emergency.ambulance'] == named['static.other'] == 'ignore'
    assert named['static.vegetation'] == 'vegetation' and int(lut.max()) == 16
    scenes = [f's{i}' for i in range(700)]
    assert len(keep_every_kth_scene(scenes, 100)) == 7  # 1 %
    assert keep_every_kth_scene(scenes, 100)[:2] == ['s0', 's100']
    assert len(keep_every_kth_scene(scenes, 20)) == 35  # 5 %


def test_items_collate_and_representative_labels(root):
    import plugins  # noqa: F401
    from plugins.slidr.mmengine import NuScenesLidarSegDataset, lidarseg_collate
    ds = NuScenesLidarSegDataset(root, split='mini_train', augment=False)
    item = ds[0]
    v = item['coords'].shape[0]
    assert item['labels'].shape == (v, ) and item['inverse'].max() == v - 1
    assert set(item['point_labels'].unique().tolist()) <= {4, 11, 15, 16}
    batch = lidarseg_collate([item, ds[1]])
    assert batch['inverse'][item['inverse'].numel():].min() >= v
    assert batch['labels'].shape[0] == batch['coords'].shape[0]


def test_linear_probe_freezes_all_but_final_and_loads_the_student(root, tmp_path):
    import plugins  # noqa: F401
    from plugins.slidr.mmengine import (NuScenesLidarSegDataset, PointMIoUMetric, SLidRPretrainer,
                                        SLidRSegmentor, lidarseg_collate)
    torch.manual_seed(0)
    pre = SLidRPretrainer(student=TINY, dim=8)
    ckpt = tmp_path / 'pre.pth'
    torch.save({'state_dict': pre.state_dict()}, ckpt)
    seg = SLidRSegmentor(TINY, pretrained=str(ckpt), linear_probe=True)
    assert 'stem.weight' in seg.loaded and 'final.weight' not in seg.loaded
    assert torch.equal(seg.backbone.stem.weight, pre.student.stem.weight)
    trainable = [n for n, p in seg.named_parameters() if p.requires_grad]
    assert trainable == ['backbone.final.weight', 'backbone.final.bias']
    seg.train()
    assert not seg.backbone.training  # frozen batch norm
    ds = NuScenesLidarSegDataset(root, split='mini_val', augment=False)
    batch = lidarseg_collate([ds[0]])
    losses = seg(**batch, mode='loss')
    assert set(losses) == {'loss_ce', 'loss_lovasz'}
    sum(losses.values()).backward()
    assert seg.backbone.final.weight.grad is not None
    out = seg(**batch, mode='predict')[0]
    assert out['pred'].shape == batch['point_labels'].shape and (out['pred'] != 0).all()
    metric = PointMIoUMetric()
    metric.process(None, [dict(pred=batch['point_labels'], target=batch['point_labels'])])
    res = metric.compute_metrics(metric.results)
    assert res['mIoU_present'] == 1.0 and res['IoU_car'] == 1.0
    with pytest.raises(ValueError, match='no student'):
        torch.save({'state_dict': {'x': torch.zeros(1)}}, tmp_path / 'bad.pth')
        SLidRSegmentor(TINY, pretrained=str(tmp_path / 'bad.pth'))
