"""Per-sample seeds: the index tag, the seeding, the samplers, the pipeline wrapper."""
import pickle
import random

import numpy as np
import pytest
import torch

from plugins.core.sample_seed import DrawIndex, sample_seed, seeded_sample


def test_draw_index_is_an_int_that_survives_pickling():
    i = DrawIndex(7, draw=3, seed=42)
    assert i == 7 and isinstance(i, int) and [10, 11, 12, 13, 14, 15, 16, 17][i] == 17
    j = pickle.loads(pickle.dumps(i))
    assert (int(j), j.draw, j.seed) == (7, 3, 42) and repr(j) == 'DrawIndex(7, draw=3, seed=42)'
    with pytest.raises(ValueError, match='draw must be'):
        DrawIndex(1, -1, 0)


def test_sample_seed_is_a_fixed_function_of_its_three_numbers():
    assert sample_seed(0, 0, 0) == sample_seed(0, 0, 0)
    seeds = {sample_seed(s, d, i) for s in range(3) for d in range(3) for i in range(3)}
    assert len(seeds) == 27 and all(0 <= s < 2**32 for s in seeds)


def test_seeded_sample_repeats_and_leaves_the_global_streams_alone():

    def draws():
        return random.random(), np.random.rand(), torch.rand(1).item()

    np.random.seed(1)
    random.seed(1)
    torch.manual_seed(1)
    expected_after = draws()
    np.random.seed(1)
    random.seed(1)
    torch.manual_seed(1)
    with seeded_sample(DrawIndex(5, 2, 0)) as seed:
        first = draws()
    assert seed == sample_seed(0, 2, 5)
    assert draws() == expected_after  # the global streams did not move
    np.random.seed(99)  # whatever ran before
    with seeded_sample(DrawIndex(5, 2, 0)):
        assert draws() == first
    with seeded_sample(DrawIndex(5, 3, 0)):
        assert draws() != first  # another epoch, another augmentation
    state = np.random.get_state()[1].copy()
    with seeded_sample(5) as none:  # a plain index: nothing changes
        assert none is None
    assert (np.random.get_state()[1] == state).all()


def test_samplers_draw_the_hosts_indices_and_tag_them():
    pytest.importorskip('mmengine')
    from mmengine.dataset import DefaultSampler, InfiniteSampler

    import plugins.core.mmengine  # noqa: F401
    from plugins.core.mmengine.sample_seed import SampleSeedInfiniteSampler, SampleSeedSampler
    data = list(range(10))
    for epoch in (0, 3):
        host, ours = DefaultSampler(data, seed=5), SampleSeedSampler(data, seed=5)
        host.set_epoch(epoch)
        ours.set_epoch(epoch)
        got = list(ours)
        assert got == list(host)
        assert {(i.draw, i.seed) for i in got} == {(epoch, 5)}
    host, ours = iter(InfiniteSampler(data, seed=2)), iter(SampleSeedInfiniteSampler(data, seed=2))
    got = [next(ours) for _ in range(25)]
    assert got == [next(host) for _ in range(25)]
    assert [i.draw for i in got] == [0] * 10 + [1] * 10 + [2] * 5
    assert sorted(got[10:20]) == data  # each round is a full pass


def test_sample_seeded_transform_repeats_whatever_ran_before():
    pytest.importorskip('mmengine')
    import plugins.core.mmengine  # noqa: F401
    from plugins.core.mmengine.sample_seed import SampleSeeded

    def coin(results):
        results['coin'] = float(np.random.rand())
        return results

    wrapped = SampleSeeded([coin])
    first = wrapped({'sample_idx': DrawIndex(3, 1, 0)})['coin']
    np.random.rand(17)
    assert wrapped({'sample_idx': DrawIndex(3, 1, 0)})['coin'] == first
    assert wrapped({'sample_idx': DrawIndex(3, 2, 0)})['coin'] != first
    assert SampleSeeded([lambda r: None])({'sample_idx': 0}) is None
    with pytest.raises(TypeError, match='transform configs or callables'):
        SampleSeeded([3])


def test_msd_crops_follow_the_tag_not_the_call_order(tmp_path):
    pytest.importorskip('monai')
    from plugins.dsd.mmengine import MSDDataset
    from plugins.testing.msd import make_msd_synthetic
    task = make_msd_synthetic(
        str(tmp_path / 'msd'), num_train=4, num_test=0, size=24, num_classes=3)
    ds = MSDDataset(task, num_val=1, roi_size=(16, 16, 16), num_samples=1)
    a = ds[DrawIndex(1, 0, 0)][0]['inputs']
    ds[DrawIndex(0, 0, 0)]
    ds[DrawIndex(2, 5, 0)]
    assert torch.equal(ds[DrawIndex(1, 0, 0)][0]['inputs'], a)
    other = MSDDataset(task, num_val=1, roi_size=(16, 16, 16), num_samples=1)
    assert torch.equal(other[DrawIndex(1, 0, 0)][0]['inputs'], a)  # a fresh process's view
    draws = [ds[DrawIndex(1, d, 0)][0]['inputs'] for d in range(1, 6)]
    assert any(not torch.equal(d, a) for d in draws)  # other epochs, other crops
