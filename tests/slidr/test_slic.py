"""The numba SLIC: label-for-label equality with scikit-image, hand cases of
the assignment and connectivity kernels, the OpenCV pre-processing, bad input."""
import numpy as np
import pytest

from plugins.slidr.datasets import slic as S
from plugins.slidr.datasets.superpixels import (blob_image, boundary_agreement, slic_fast,
                                                slic_reference)


@pytest.mark.parametrize(
    'shape,segments,compactness,sigma',
    [
        ((90, 160), 150, 6.0, 3.0),  # the SLidR setting
        ((97, 131), 40, 10.0, 0.0),  # odd sizes, no blur
        ((64, 64), 7, 0.5, 1.0),  # colour-dominated
        ((120, 200), 300, 30.0, 2.0),  # space-dominated, many segments
    ])
def test_equals_scikit_image_label_for_label(shape, segments, compactness, sigma):
    from skimage.segmentation import slic
    img = blob_image(*shape, blobs=12, seed=sum(shape))
    ref = slic(img, n_segments=segments, compactness=compactness, sigma=sigma, start_label=0)
    ours = S.slic_labels(img, segments, compactness, sigma)
    assert ours.dtype == np.int64
    np.testing.assert_array_equal(ours, ref)
    rows = S.slic_labels(img, segments, compactness, sigma, parallel=True)
    np.testing.assert_array_equal(rows, ref)


def test_fast_at_factor_one_with_skimage_preprocessing_is_the_reference():
    img = blob_image(90, 160, blobs=8, seed=3)
    np.testing.assert_array_equal(
        slic_fast(img, factor=1, preprocess='skimage'), slic_reference(img))


def test_two_colour_image_splits_on_the_colour_edge():
    # left half red, right half blue; two clusters start at the grid centres
    img = np.zeros((6, 8, 3), np.uint8)
    img[:, :4] = (255, 0, 0)
    img[:, 4:] = (0, 0, 255)
    labels = S.slic_labels(img, n_segments=2, compactness=1.0)
    assert np.all(labels[:, :4] == labels[0, 0]) and np.all(labels[:, 4:] == labels[0, 7])
    assert labels[0, 0] != labels[0, 7]


def test_assign_row_hand_case_and_empty_cluster():
    # one row of 4 grey pixels, features 0, 0, 10, 10; centres at x=0 (colour 0)
    # and x=3 (colour 10), a NaN (empty) centre in between that must never win
    feats = np.array([[[0.0], [0.0], [10.0], [10.0]]])
    centres = np.array([[0.0, 0.0, 0.0, 0.0], [np.nan, np.nan, np.nan, np.nan],
                        [0.0, 0.0, 3.0, 10.0]])
    labels = np.full((1, 4), -1, np.int64)
    distance = np.empty((1, 4))
    wrote = S._assign_serial(feats, centres, 1, 1, 1.0, labels, distance)
    assert wrote
    np.testing.assert_array_equal(labels, [[0, 0, 2, 2]])
    # distance = spatial² * weight + colour²: pixel 1 → centre 0: 1 + 0
    np.testing.assert_allclose(distance, [[0.0, 1.0, 1.0, 0.0]])
    # windows are ±2 steps: with step 1, centre 0 cannot reach x = 3
    centres_far = centres[[0]]
    labels[:] = -1
    S._assign_serial(feats, centres_far, 1, 1, 1.0, labels, distance)
    np.testing.assert_array_equal(labels, [[0, 0, 0, -1]])
    # a tie keeps the lower cluster index (strict comparison, increasing k)
    tie = np.array([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    labels[:] = -1
    S._assign_parallel(np.zeros((1, 4, 1)), tie, 2, 2, 1.0, labels, distance)
    np.testing.assert_array_equal(labels, [[0, 0, 0, 0]])


def test_update_means_in_raster_order():
    feats = np.arange(6, dtype=np.float64).reshape(2, 3, 1)
    labels = np.array([[0, 0, 1], [0, 1, 1]])
    centres = np.zeros((3, 4))
    S._update(feats, labels, centres)
    # cluster 0: pixels (0,0), (0,1), (1,0) → y 1/3, x 1/3, colour (0+1+3)/3
    np.testing.assert_allclose(centres[0], [0.0, 1 / 3, 1 / 3, 4 / 3])
    np.testing.assert_allclose(centres[1], [0.0, 2 / 3, 5 / 3, 11 / 3])
    assert np.isnan(centres[2]).all()  # empty cluster → NaN, never assigned again


def test_connectivity_merges_small_pieces_and_splits_large_ones():
    labels = np.zeros((4, 6), np.int64)
    labels[:, 3:] = 1
    labels[1, 1] = 1  # an island of label 1 inside label 0
    out = S._connect(labels, 2, 100)
    # the island (size 1 < 2) joins the component it touches (label 0's new id)
    expected = np.zeros((4, 6), np.int64)
    expected[:, 3:] = 1
    np.testing.assert_array_equal(out, expected)
    # components grow at most max_size pixels; the rest starts new ids
    flat = np.zeros((1, 5), np.int64)
    np.testing.assert_array_equal(S._connect(flat, 1, 2), [[0, 0, 1, 1, 2]])


def test_opencv_preprocessing_close_to_skimage():
    img = blob_image(90, 160, blobs=10, seed=5)
    a = S._features_skimage(img, 1.5)
    b = S._features_opencv(img, 1.5)
    assert b.dtype == np.float32 and a.shape == b.shape == (90, 160, 3)
    assert np.abs(a - b).max() < 0.5  # Lab units (L in 0..100)
    recall, precision = boundary_agreement(
        S.slic_labels(img, 150, 6.0, 1.5), S.slic_labels(img, 150, 6.0, 1.5, preprocess='opencv'))
    assert recall > 0.9 and precision > 0.9


def test_bad_inputs_are_named():
    img = blob_image(20, 30, blobs=3)
    with pytest.raises(ValueError, match='RGB uint8'):
        S.slic_labels(img.astype(np.float32))
    with pytest.raises(ValueError, match='non-empty'):
        S.slic_labels(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(ValueError, match='compactness'):
        S.slic_labels(img, compactness=0)
    with pytest.raises(ValueError, match='n_segments'):
        S.slic_labels(img, n_segments=0)
    with pytest.raises(ValueError, match="preprocess must be 'skimage' or 'opencv'"):
        S.slic_labels(img, preprocess='pil')
