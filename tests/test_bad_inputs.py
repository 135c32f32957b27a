"""The bad-input catalogue: every bad input gets a clear error naming it, or a
documented finite result.

Each row is ``(id, call, expected)``: ``expected`` is ``(exception type, regex
the message must match)`` — the regex names the offending value or input — or
a callable that checks the documented result. Checkpoint files are covered
in tests/core/test_checkpoint_files.py.
"""
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip('mmengine')

import plugins  # noqa: F401

NAN = float('nan')


# ---------------------------------------------------------------- GO-LSD maths
def _w(r=32):
    from plugins.golsd.functional import weighting_function
    return weighting_function(r, 4.0, 0.5)


def _fgl(target):
    from plugins.golsd.functional import fgl_loss
    m = target.shape[0]
    return fgl_loss(
        torch.zeros(m, 4 * 33), target, torch.ones(m, 4), torch.zeros(m, 4), torch.ones(m), 1.0)


def _two_bin_nan():
    from plugins.golsd.functional import two_bin_targets
    _, wl, wr = two_bin_targets(torch.tensor([0.1, NAN]), _w())
    return wl, wr


def _nan_weights_propagate(result):
    wl, wr = result
    return math.isfinite(wl[0]) and math.isnan(wl[1]) and math.isnan(wr[1])


# ------------------------------------------------------------- GO-LSD configs
def _golsd_model(**head):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    register_all_modules()
    cfg = Config.fromfile('configs/golsd/dino-tiny_r18_golsd_1xb8-12e_demo-coco.py')
    cfg.model.bbox_head.update(head)
    return MODELS.build(cfg.model)


def _registry_typo(tmp):
    from mmengine.config import Config
    from runner_setup import build_runner
    cfg = Config.fromfile('configs/golsd/dino-tiny_r18_golsd_1xb8-12e_demo-coco.py')
    cfg.model.type = 'GOLSDDIN0'
    cfg.work_dir = str(tmp / 'registry_typo')
    return build_runner(cfg)


def _gt(labels, boxes, path='img_7.png'):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    s = DetDataSample(metainfo=dict(img_path=path))
    s.gt_instances = InstanceData(labels=torch.tensor(labels), bboxes=torch.tensor(boxes))
    return s


def _check_gt(labels, boxes):
    from plugins.golsd.mmdet.inputs import check_ground_truth
    good = _gt([0], [[1., 1., 5., 5.]], 'img_0.png')
    check_ground_truth([good, _gt(labels, boxes)], num_classes=2)


# ----------------------------------------------------------------------- DSD
def _slots(b=2, shape=(3, 8, 8), **over):
    from plugins.dsd.functional import SLOTS
    out = {s: torch.randn(b, *shape, requires_grad=True) for s in SLOTS}
    out.update(over)
    return out


def _dsd(logits=None, labels=None, **kw):
    from plugins.dsd.functional import dsd_loss
    logits = _slots() if logits is None else logits
    labels = torch.zeros(2, 1, 8, 8, dtype=torch.long) if labels is None else labels
    return dsd_loss(logits, labels, **kw)


def _empty_batch_is_zero(result):
    total, terms = result
    return float(total) == 0.0 and total.requires_grad and len(terms) == 11 and all(
        float(v) == 0.0 for v in terms.values())


@pytest.fixture(scope='module')
def msd(tmp_path_factory):
    pytest.importorskip('monai')
    from plugins.testing.msd import make_msd_synthetic
    return make_msd_synthetic(
        str(tmp_path_factory.mktemp('msd_bad')), num_train=3, num_test=0, size=16, num_classes=3)


def _msd_dataset(task, **kw):
    from plugins.dsd.mmengine import MSDDataset
    return MSDDataset(task, num_val=0, roi_size=(8, 8, 8), num_samples=1, **kw)


def _msd_with(task, tmp, name, edit):
    """A copy of the task with one file rewritten by ``edit(folder)``."""
    import shutil
    copy = os.path.join(tmp, name)
    if not os.path.isdir(copy):
        shutil.copytree(task, copy)
        edit(copy)
    return copy


def _nifti(path, shape):
    import nibabel as nib
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4)), path)


def _first(folder, sub):
    return os.path.join(folder, sub, sorted(os.listdir(os.path.join(folder, sub)))[0])


def _msd_label_shape(task, tmp):
    copy = _msd_with(task, tmp, 'label_shape',
                     lambda d: _nifti(_first(d, 'labelsTr'), (16, 16, 12)))
    ds = _msd_dataset(copy)
    return [ds[i] for i in range(len(ds))]


def _msd_2d_image(task, tmp):

    def edit(d):
        _nifti(_first(d, 'imagesTr'), (16, 16))
        _nifti(_first(d, 'labelsTr'), (16, 16))

    ds = _msd_dataset(_msd_with(task, tmp, 'image_2d', edit))
    return [ds[i] for i in range(len(ds))]


def _msd_truncated(task, tmp):

    def edit(d):
        path = os.path.join(d, 'dataset.json')
        text = open(path).read()
        open(path, 'w').write(text[:len(text) // 2])

    return _msd_dataset(_msd_with(task, tmp, 'truncated', edit))


def _msd_missing_file(task, tmp):
    return _msd_dataset(_msd_with(task, tmp, 'missing', lambda d: os.remove(_first(d, 'labelsTr'))))


# --------------------------------------------------------------------- SLidR
def _voxelize(xyz, **kw):
    from plugins.slidr.geometry import cylindrical_voxelize
    return cylindrical_voxelize(torch.tensor(xyz, dtype=torch.float32), **kw)


def _slots_of(sp, **kw):
    from plugins.slidr.functional import superpixel_slots
    return superpixel_slots(sp, **kw)


def _unet():
    from plugins.slidr.models.sparse import SparseUNet
    torch.manual_seed(0)
    return SparseUNet(1, 4, layers=(1, ) * 8, planes=(4, ) * 8, init_dim=4)


def _unet_train(coords):
    net = _unet().train()
    coords = torch.tensor(coords)
    return net(coords, torch.ones(coords.shape[0], 1))


def _calib(tmp, text):
    from plugins.slidr.datasets.semantickitti import read_calib
    path = os.path.join(tmp, f'calib_{abs(hash(text))}.txt')
    with open(path, 'w') as f:
        f.write(text)
    return read_calib(path)


P = ' '.join(['1'] * 12)


def _coco(tmp, text_or_data, name):
    import json

    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules

    import plugins.core.mmdet  # noqa: F401
    register_all_modules()
    path = os.path.join(tmp, name)
    with open(path, 'w') as f:
        f.write(text_or_data if isinstance(text_or_data, str) else json.dumps(text_or_data))
    return DATASETS.build(
        dict(
            type='CocoDataset',
            ann_file=path,
            data_root=str(tmp),
            metainfo=dict(classes=('square', )),
            pipeline=[],
            test_mode=True))


COCO = dict(
    images=[dict(id=1, file_name='a.png', width=8, height=8)],
    categories=[dict(id=1, name='square')],
    annotations=[dict(id=5, image_id=1, category_id=7, bbox=[1, 1, 3, 3], area=9, iscrowd=0)])


# --------------------------------------------------------------------- MACIL
def _av(visual_dim=1024, audio_dim=128, b=(2, 2)):
    from plugins.macil import MACILAudioVisual
    torch.manual_seed(0)
    return MACILAudioVisual()(torch.rand(b[0], 6, visual_dim), torch.rand(b[1], 6, audio_dim))


# ---------------------------------------------------------------------- core
def _submodule_wrappers():
    from torch import nn

    from plugins.core.optim import SubmoduleOptimWrapperConstructor
    model = nn.Module()
    model.av = nn.Linear(2, 2)
    return SubmoduleOptimWrapperConstructor({'vision': dict(optimizer=dict(type='SGD', lr=1))})(
        model)


CASES = [
    # GO-LSD functional
    ('golsd/reg_max odd', lambda c: _w(31), (ValueError,
                                             r'reg_max must be an even integer >= 4, got 31')),
    ('golsd/reg_max 2', lambda c: _w(2), (ValueError, r'got 2')),
    ('golsd/reg_scale 0',
     lambda c: __import__('plugins.golsd.functional', fromlist=['x']).weighting_function(
         32, 0.0, 0.5), (ValueError, r'reg_scale must be a finite number > 0, got 0.0')),
    ('golsd/reg_scale nan', lambda c: __import__('plugins.golsd.functional', fromlist=['x']).
     weighting_function(32, NAN, 0.5), (ValueError, r'reg_scale .* got nan')),
    ('golsd/up negative', lambda c: __import__('plugins.golsd.functional', fromlist=['x']).
     weighting_function(32, 4.0, -1.0), (ValueError, r'up must be a finite number > 0, got -1.0')),
    ('golsd/fgl target bin out of range', lambda c: _fgl(torch.tensor([[40, 0, 0, 0]])),
     (ValueError, r'target_left must lie in \[0, 31\].*\[0, 40\]')),
    ('golsd/fgl negative target bin', lambda c: _fgl(torch.tensor([[-1, 0, 0, 0]])),
     (ValueError, r'\[-1, 0\]')),
    ('golsd/fgl row mismatch',
     lambda c: __import__('plugins.golsd.functional', fromlist=['x']).fgl_loss(
         torch.zeros(2, 132), torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4),
         torch.zeros(1, 4), torch.ones(1), 1.0), (ValueError, r'2 corner rows for 1 targets')),
    ('golsd/corner width', lambda c: __import__('plugins.golsd.functional', fromlist=['x']).
     distribution_integral(torch.zeros(2, 10), _w()), (ValueError, r'end in 10 values')),
    ('golsd/ddf shapes', lambda c: __import__('plugins.golsd.functional', fromlist=['x']).ddf_loss(
        torch.zeros(2, 132), torch.zeros(3, 132), torch.zeros(2, dtype=torch.bool), torch.ones(2)),
     (ValueError, r'student \(2, 132\) and teacher')),
    ('golsd/lqe k 0', lambda c: __import__('plugins.golsd.functional', fromlist=['x']).
     lqe_statistics(torch.zeros(1, 132), k=0), (ValueError, r'k must be in 1\.\.33')),
    ('golsd/two-bin NaN offset', lambda c: _two_bin_nan(), _nan_weights_propagate),
    ('golsd/go_union lengths', lambda c: __import__('plugins.golsd.functional', fromlist=['x']).
     go_union([(torch.zeros(2, dtype=torch.long), torch.zeros(1, dtype=torch.long),
                torch.zeros(2, dtype=torch.long))]), (ValueError, r'match set 0')),
    # GO-LSD options and ground truth
    ('golsd/golsd option typo',
     lambda c: __import__('plugins.golsd.mmdet.fdr', fromlist=['x']).fdr_config({'reg_maks': 16}),
     (ValueError, r"'reg_maks' \(did you mean 'reg_max'\?\)")),
    ('golsd/loss_fgl typo', lambda c: _golsd_model(loss_fgl=dict(loss_wieght=0.3)),
     (ValueError, r"bbox_head.loss_fgl: 'loss_wieght' \(did you mean 'loss_weight'\?\)")),
    ('golsd/loss_ddf unknown', lambda c: _golsd_model(loss_ddf=dict(weight=0.3)),
     (ValueError, r"bbox_head.loss_ddf: 'weight'")),
    ('golsd/lqe unknown', lambda c: _golsd_model(lqe=dict(k=4, hiden=64)),
     (ValueError, r"'hiden' \(did you mean 'hidden'\?\)")),
    ('golsd/head type mismatch', lambda c: _golsd_model(type='DINOHead'),
     (ValueError, r"GOLSDDINO needs bbox_head type 'GOLSDDINOHead', got 'DINOHead'")),
    ('golsd/type typo', lambda c: _registry_typo(c.tmp),
     (KeyError, r"type 'GOLSDDIN0' is not a registered model: did you mean 'GOLSDDINO'")),
    ('golsd/label >= num_classes', lambda c: _check_gt([5], [[1., 1., 4., 4.]]),
     (ValueError, r'image 1 \(img_7.png\): ground truth 0 has label 5, outside \[0, 2\)')),
    ('golsd/label -1', lambda c: _check_gt([0, -1], [[1., 1., 4., 4.], [2., 2., 3., 3.]]),
     (ValueError, r'ground truth 1 has label -1')),
    ('golsd/NaN box', lambda c: _check_gt([1], [[1., NAN, 4., 4.]]),
     (ValueError, r'img_7.png\): ground truth 0 has a non-finite box \[1.0, nan, 4.0, 4.0\]')),
    ('golsd/inverted box', lambda c: _check_gt([1], [[5., 1., 4., 4.]]),
     (ValueError, r'inverted box \[5.0, 1.0, 4.0, 4.0\]')),
    # DSD
    ('dsd/alpha NaN', lambda c: _dsd(alpha=NAN), (ValueError, r'alpha .* got nan')),
    ('dsd/alpha negative', lambda c: _dsd(alpha=-1.0), (ValueError, r'alpha .* got -1.0')),
    ('dsd/empty batch', lambda c: _dsd(_slots(b=0), torch.zeros(0, 1, 8, 8, dtype=torch.long)),
     _empty_batch_is_zero),
    ('dsd/missing slot', lambda c: _dsd({'main': torch.zeros(2, 3, 8, 8)}),
     (KeyError, r"missing \['dec4', 'dec3'")),
    ('dsd/slot shape', lambda c: _dsd(_slots(dec1=torch.zeros(2, 3, 4, 4))),
     (ValueError, r'slot dec1 has shape \(2, 3, 4, 4\), main has \(2, 3, 8, 8\)')),
    ('dsd/label out of range', lambda c: _dsd(labels=torch.full(
        (2, 1, 8, 8), 7)), (ValueError, r'label values \[7\] are outside the class range')),
    ('dsd/label non-integer', lambda c: _dsd(labels=torch.full(
        (2, 1, 8, 8), 0.5)), (ValueError, r'non-integer')),
    ('dsd/label shape', lambda c: _dsd(labels=torch.zeros(2, 1, 4, 4, dtype=torch.long)),
     (ValueError, r'labels must have shape \(B, 1, \*S\) = \(2, 1, 8, 8\)')),
    ('dsd/temperature 0', lambda c: _dsd(temperature=0.0),
     (ValueError, r'temperature must be a finite number > 0, got 0.0')),
    ('dsd/3-D logits', lambda c: _dsd(_slots(shape=(3, 8))),
     (ValueError, r'logits must be \(B, C, H, W\) or \(B, C, D, H, W\), got \(2, 3, 8\)')),
    ('dsd/msd no dataset.json', lambda c: _msd_dataset(str(c.tmp)), (FileNotFoundError,
                                                                     r'has no dataset.json')),
    ('dsd/msd truncated dataset.json', lambda c: _msd_truncated(c.msd, c.tmp),
     (ValueError, r'truncated/dataset.json is not valid JSON: .* \(the text ends early')),
    ('dsd/msd listed file missing', lambda c: _msd_missing_file(c.msd, c.tmp),
     (FileNotFoundError, r'missing/dataset.json lists .*labelsTr.*which does not exist')),
    ('dsd/msd label shape differs', lambda c: _msd_label_shape(c.msd, c.tmp),
     (ValueError, r"labelsTr/.*: label shape \(16, 16, 12\) differs from the image's "
      r'\(16, 16, 16\)')),
    ('dsd/msd 2-D image in 3-D task', lambda c: _msd_2d_image(c.msd, c.tmp),
     (ValueError, r'imagesTr/.*: a 2-D image \(shape \(16, 16\)\) in a 3-D task')),
    ('dsd/msd split', lambda c: _msd_dataset(c.msd, split='training'),
     (ValueError, r"split must be 'train', 'val' or 'test', got 'training'")),
    # SLidR
    ('slidr/NaN z', lambda c: _voxelize([[1., 2., 0.], [1., 2., NAN]]),
     (ValueError, r'1 of 2 points have non-finite coordinates, e.g. row 1')),
    ('slidr/inf x', lambda c: _voxelize([[float('inf'), 2., 0.]]), (ValueError, r'row 0: \[inf')),
    ('slidr/xyz shape', lambda c: _voxelize([[1., 2.]]), (ValueError,
                                                          r'xyz must be \(N, 3\), got \(1, 2\)')),
    ('slidr/voxel size 0', lambda c: _voxelize([[1., 2., 3.]], size=0.0),
     (ValueError, r'must be > 0, got 0.0')),
    ('slidr/float superpixels', lambda c: _slots_of(torch.full(
        (1, 4, 4), 2.7)), (TypeError, r'superpixel ids must be integers, got torch.float32')),
    ('slidr/negative superpixels', lambda c: _slots_of(torch.full(
        (1, 4, 4), -1)), (ValueError, r'superpixel ids must be >= 0')),
    ('slidr/superpixel overflow', lambda c: _slots_of(torch.full(
        (2, 4, 4), 200)), (ValueError, r'reach 200 in image 0')),
    ('slidr/superpixel mode',
     lambda c: _slots_of(torch.zeros(1, 4, 4, dtype=torch.long), on_overflow='wrap'),
     (ValueError, r"on_overflow must be 'error' or 'offsets', got 'wrap'")),
    ('slidr/pairing slot', lambda c: __import__('plugins.slidr.functional', fromlist=['x']).
     pool_points(torch.zeros(3, 2), torch.tensor([0, 1]), torch.tensor([0, 9]), 4),
     (ValueError, r'slots outside \[0, 4\)')),
    ('slidr/pairing row', lambda c: __import__('plugins.slidr.functional', fromlist=['x']).
     pool_points(torch.zeros(3, 2), torch.tensor([0, 5]), torch.tensor([0, 1]), 4),
     (ValueError, r'3D rows outside \[0, 3\)')),
    ('slidr/slot map', lambda c: __import__('plugins.slidr.functional', fromlist=['x']).pool_pixels(
        torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 3, dtype=torch.long), 4),
     (ValueError, r'slot map \(1, 3, 3\) does not match pixel features \(1, 2, 4, 4\)')),
    ('slidr/kept rule', lambda c: __import__('plugins.slidr.functional', fromlist=['x']).kept_slots(
        torch.zeros(2, 2), rule='any'), (ValueError, r"got 'any'")),
    ('slidr/nce shapes',
     lambda c: __import__('plugins.slidr.functional', fromlist=['x']).superpixel_nce(
         torch.zeros(3, 4), torch.zeros(3, 5)), (ValueError, r'\(3, 4\) and 2D \(3, 5\)')),
    ('slidr/lovasz label >= C', lambda c: __import__('plugins.slidr.metrics', fromlist=['x']).
     lovasz_softmax(torch.full((3, 4), 0.25), torch.tensor([0, 1, 4])),
     (ValueError, r'labels must lie in \[0, 4\).*got values in \[0, 4\]')),
    ('slidr/confusion pred >= C', lambda c: __import__('plugins.slidr.metrics', fromlist=['x']).
     confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 1]), 3),
     (ValueError, r'pred ids must lie in \[0, 3\), got values in \[0, 3\]')),
    ('slidr/confusion lengths', lambda c: __import__('plugins.slidr.metrics', fromlist=['x']).
     confusion_matrix(torch.tensor([0, 1, 2]), torch.tensor([0, 1]), 3),
     (ValueError, r'pred \(3,\) and target \(2,\) differ')),
    ('slidr/zero quaternion', lambda c: __import__('plugins.slidr.geometry', fromlist=['x']).
     quaternion_to_matrix([0, 0, 0, 0]), (ValueError, r'non-zero quaternion')),
    ('slidr/intrinsic shape', lambda c: __import__('plugins.slidr.geometry', fromlist=['x']).
     project_to_image(np.ones((3, 2)), np.eye(4), 10, 10),
     (ValueError, r'camera_intrinsic must be 3x3, got shape \(4, 4\)')),
    ('slidr/one voxel in training', lambda c: _unet_train([[0, 0, 0, 0]]),
     (ValueError, r'1 voxel\(s\) reach a batch norm of 4 channels in training')),
    ('slidr/wrapped coordinates', lambda c: _unet_train([[0, 0, 0, -2**62], [0, 1, 0, 2**62]]),
     (ValueError, r'too many to pack into int64 keys')),
    ('slidr/empty scan', lambda c: _unet_train(torch.zeros(0, 4, dtype=torch.long).tolist()),
     (ValueError, r'coords must be \(V, 4\)|empty scan')),
    ('slidr/calib truncated', lambda c: _calib(c.tmp, f'P2: {P}\nTr: 1 2 3 4 5 6 7\n'),
     (ValueError, r'calib_.*\.txt: Tr has 7 numbers, expected 12')),
    ('slidr/calib not a number', lambda c: _calib(c.tmp, f'P2: {P}\nTr: 1 2 x\n'),
     (ValueError, r'calib_.*\.txt, line 2: Tr holds a value that is not a number')),
    ('slidr/calib missing P2', lambda c: _calib(c.tmp, f'Tr: {P}\n'), (KeyError,
                                                                       r"lacks \['P2'\]")),
    ('coco/unknown category', lambda c: _coco(c.tmp, COCO, 'cat.json'),
     (ValueError, r"cat.json: annotation 5 of image 'a.png' has category_id 7, which is not "
      r"among the file's categories \[1\]")),
    ('coco/truncated json', lambda c: _coco(c.tmp, '{"images": [{"id": 1, "file_na', 'cut.json'),
     (ValueError, r'annotation file .*cut.json is not valid JSON')),
    ('slidr/student option typo', lambda c: __import__(
        'plugins.slidr.mmengine', fromlist=['x']).SLidRPretrainer(student=dict(layres=(1, ) * 8)),
     (ValueError, r"model.student: 'layres' \(did you mean 'layers'\?\)")),
    ('slidr/backbone option typo', lambda c: __import__(
        'plugins.slidr.mmengine', fromlist=['x']).SLidRSegmentor(backbone=dict(init_dims=8)),
     (ValueError, r"model.backbone: 'init_dims' \(did you mean 'init_dim'\?\)")),
    # MACIL
    ('macil/network option typo', lambda c: __import__('plugins.macil.mmengine', fromlist=['x']
                                                       ).MACILSD(network=dict(visual_dims=512)),
     (ValueError, r"model.network: 'visual_dims' \(did you mean 'visual_dim'\?\)")),
    ('macil/visual dims', lambda c: _av(visual_dim=512),
     (ValueError, r'visual features have 512 dims, the network expects 1024')),
    ('macil/audio dims', lambda c: _av(audio_dim=64),
     (ValueError, r'audio features have 64 dims, the network expects 128')),
    ('macil/batch mismatch', lambda c: _av(b=(2, 3)), (ValueError, r'must share B and T')),
    ('macil/video labels', lambda c: __import__('plugins.macil.functional', fromlist=['x']).
     mil_loss(torch.full((2, ), 0.5), torch.tensor([0.0, 2.0])),
     (ValueError, r'video labels must be 0 or 1, got \[0.0, 2.0\]')),
    ('macil/NaN scores', lambda c: __import__('plugins.macil.metrics', fromlist=['x']).pr_auc(
        np.array([0.1, NAN]), np.array([0, 1])), (ValueError, r'NaN or inf')),
    ('macil/no positive frame', lambda c: __import__('plugins.macil.metrics', fromlist=['x']).
     pr_auc(np.array([0.1, 0.2]), np.array([0, 0])), (ValueError, r'at least one positive')),
    ('macil/negative epoch',
     lambda c: __import__('plugins.macil.functional', fromlist=['x']).lambda_ramp(-1),
     (ValueError, r'epoch must be >= 0, got -1')),
    ('macil/lengths', lambda c: __import__('plugins.macil.functional', fromlist=['x']).topk_mean(
        torch.zeros(2, 5), torch.tensor([3, 9])), (ValueError, r'1 <= T_i <= 5')),
    # core
    ('core/temperature inf', lambda c: __import__('plugins.core.functional', fromlist=['x']).
     check_temperature(float('inf')), (ValueError, r'got inf')),
    ('core/kl class_reduction', lambda c: __import__('plugins.core.losses', fromlist=['x']).
     TemperatureKLLoss(class_reduction='avg'), (ValueError, r"got 'avg'")),
    ('core/info_nce features', lambda c: __import__('plugins.core.functional', fromlist=['x']).
     info_nce(torch.zeros(2, 4), torch.zeros(2, 3)), (ValueError, r'3 features, query has 4')),
    ('core/option typo', lambda c: __import__('plugins.core.options', fromlist=['x']).check_keys(
        {'temprature': 3}, ['temperature', 'alpha'], 'dsd'),
     (ValueError, r"unknown key in dsd: 'temprature' \(did you mean 'temperature'\?\)")),
    ('core/option not a dict', lambda c: __import__('plugins.core.options', fromlist=['x']).
     check_keys([('a', 1)], ['a'], 'model.dsd'), (TypeError, r'model.dsd must be a dict')),
    ('core/tap path', lambda c: __import__('plugins.core.taps', fromlist=['x']).resolve_module(
        torch.nn.Sequential(torch.nn.Linear(1, 1)), 'encoder.0'), (KeyError, r'encoder')),
    ('core/skip limit 0',
     lambda c: __import__('plugins.core.nonfinite', fromlist=['x']).SkipCounter(0),
     (ValueError, r'max_consecutive_skips must be ≥ 1, got 0')),
    ('core/optimizer submodule', lambda c: _submodule_wrappers(),
     (ValueError, r"names submodule 'vision', which the model lacks; its submodules are \['av'\]")),
    ('core/draw index',
     lambda c: __import__('plugins.core.sample_seed', fromlist=['x']).DrawIndex(3, -2, 0),
     (ValueError, r'draw must be ≥ 0, got -2')),
    ('core/json', lambda c: __import__('plugins.core.options', fromlist=['x']).read_json(
        str(c.tmp / 'nope.json'), 'COCO annotations'),
     (FileNotFoundError, r'COCO annotations .*nope.json does not exist')),
]


@pytest.fixture(scope='module')
def ctx(tmp_path_factory, msd):
    return SimpleNamespace(tmp=tmp_path_factory.mktemp('bad_inputs'), msd=msd)


def test_the_catalogue_is_large_and_names_are_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) >= 60 and len(set(ids)) == len(ids)


@pytest.mark.parametrize('case', CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, ctx):
    _, call, expected = case
    if callable(expected):
        assert expected(call(ctx))
        return
    error, pattern = expected
    with pytest.raises(error) as info:
        call(ctx)
    message = str(info.value.args[0]) if isinstance(info.value, KeyError) else str(info.value)
    assert __import__('re').search(pattern, message), message
