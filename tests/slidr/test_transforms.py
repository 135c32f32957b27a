"""SLidR's augmentations as registered pipeline transforms."""
import numpy as np
import pytest
import torch

pytest.importorskip('mmengine')

from plugins.slidr.datasets.augment import (drop_cuboid, flip_horizontal, resized_crop,
                                            rotate_flip_cloud)
from plugins.slidr.datasets.transforms import (DropCuboids, RandomCameraOrder,
                                               RandomResizedCropFlipImages, RandomRotateFlipCloud,
                                               ResizeImages)


def _results(seed=0, cams=3, n=400, h=60, w=100):
    rng = np.random.default_rng(123)
    xyz = rng.normal(size=(n, 3)).astype(np.float32)
    points = np.concatenate([xyz, rng.random((n, 1), np.float32)], 1)
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(cams)]
    sps = [rng.integers(0, 10, (h, w)).astype(np.uint8) for _ in range(cams)]
    pairs = [
        np.stack(
            [rng.choice(n, 300, replace=False),
             rng.integers(0, h, 300),
             rng.integers(0, w, 300)], 1) for _ in range(cams)
    ]
    return dict(
        xyz=xyz,
        points=points,
        images=images,
        superpixels=sps,
        pairs=pairs,
        cameras=[f'CAM_{i}' for i in range(cams)],
        rng=np.random.default_rng(seed))


def test_the_default_pipeline_makes_the_functions_draws_in_order():
    """The transforms equal the functions called in the paper's order on one stream."""
    got = _results()
    for t in (RandomCameraOrder(), RandomRotateFlipCloud(), DropCuboids(min_pairs=10),
              RandomResizedCropFlipImages((32, 56), min_pairs=10)):
        got = t(got)
    want = _results()
    rng = want['rng']
    order = list(range(3))
    rng.shuffle(order)
    images = [want['images'][i] for i in order]
    sps = [want['superpixels'][i] for i in order]
    pairs = [want['pairs'][i] for i in order]
    xyz = rotate_flip_cloud(want['xyz'], rng)
    keep, pairs = drop_cuboid(xyz, pairs, rng, 10)
    assert got['cameras'] == [f'CAM_{i}' for i in order]
    np.testing.assert_array_equal(got['xyz'], xyz[keep])
    np.testing.assert_array_equal(got['points'], want['points'][keep])
    for n in range(3):
        img, sp, p = resized_crop(images[n], sps[n], pairs[n], (32, 56), rng, 10)
        img, sp, p = flip_horizontal(img, sp, p, rng)
        np.testing.assert_array_equal(got['images'][n], img)
        np.testing.assert_array_equal(got['superpixels'][n], sp)
        np.testing.assert_array_equal(got['pairs'][n], p)


def test_resize_maps_pixels_by_hand():
    r = _results(cams=1, h=10, w=20)
    r['pairs'] = [np.array([[0, 0, 0], [1, 9, 19], [2, 5, 10]])]
    out = ResizeImages((5, 10))(r)
    assert out['images'][0].shape == (5, 10, 3) and out['superpixels'][0].shape == (5, 10)
    # rows × 5/10 and columns × 10/20, rounded half to even, clipped to the image
    np.testing.assert_array_equal(out['pairs'][0], [[0, 0, 0], [1, 4, 9], [2, 2, 5]])


def test_flip_probability_one_mirrors_every_column():
    r = _results(cams=2, h=10, w=20)
    before = [p.copy() for p in r['pairs']]
    images = [i.copy() for i in r['images']]
    for n in range(2):
        img, _, p = flip_horizontal(images[n], r['superpixels'][n], before[n],
                                    np.random.default_rng(0), 1.0)
        np.testing.assert_array_equal(p[:, 2], 19 - before[n][:, 2])
        np.testing.assert_array_equal(img, images[n][:, ::-1])


def test_bad_options_and_a_missing_stream_are_named():
    with pytest.raises(ValueError, match='size must be'):
        ResizeImages((0, 10))
    with pytest.raises(ValueError, match='flip_prob'):
        RandomResizedCropFlipImages(flip_prob=2.0)
    with pytest.raises(ValueError, match='min_pairs'):
        DropCuboids(min_pairs=-1)
    r = _results()
    r.pop('rng')
    with pytest.raises(KeyError, match='RandomRotateFlipCloud draws from results'):
        RandomRotateFlipCloud()(r)


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    pytest.importorskip('nuscenes')
    from plugins.testing.nuscenes import make_nuscenes_synthetic
    return make_nuscenes_synthetic(str(tmp_path_factory.mktemp('nus')), samples_per_scene=2)


def test_a_config_pipeline_of_registered_types_equals_the_default(root):
    from mmengine.registry import DATASETS

    import plugins  # noqa: F401
    base = dict(
        type='NuScenesSLidRDataset',
        data_root=root,
        split='mini_train',
        crop=(48, 88),
        min_pairs=32)
    default = DATASETS.build(base)
    listed = DATASETS.build(
        dict(
            base,
            pipeline=[
                dict(type='RandomCameraOrder'),
                dict(type='RandomRotateFlipCloud'),
                dict(type='DropCuboids', min_pairs=32),
                dict(type='RandomResizedCropFlipImages', size=(48, 88), min_pairs=32)
            ]))
    for i in range(2):
        a, b = default[i], listed[i]
        assert all(torch.equal(a[k], b[k]) for k in a)
    # without the camera shuffle the draws differ: the pipeline is what runs
    fewer = DATASETS.build(dict(base, pipeline=[dict(type='ResizeImages', size=(48, 88))]))
    assert not torch.equal(fewer[0]['images'], default[0]['images'])
    seg = DATASETS.build(
        dict(type='NuScenesLidarSegDataset', data_root=root, split='mini_train', pipeline=[]))
    plain = DATASETS.build(
        dict(type='NuScenesLidarSegDataset', data_root=root, split='mini_train', augment=False))
    assert torch.equal(seg[0]['coords'], plain[0]['coords'])
