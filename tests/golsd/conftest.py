import importlib.util
import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLSD_DEMO = os.path.join(ROOT, 'configs/golsd/dino-tiny_r18_golsd_1xb8-12e_demo-coco.py')
DINO_DEMO = os.path.join(ROOT, 'configs/golsd/dino-tiny_r18_1xb8-12e_demo-coco.py')


def build(config, seed=0):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import plugins  # noqa: F401
    register_all_modules()
    cfg = Config.fromfile(config)
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def samples(counts, size=96):
    """Data samples with ``counts[i]`` ground-truth boxes in image i."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    boxes = torch.tensor([[10., 10, 50, 60], [40, 30, 90, 80], [5, 60, 30, 90]])
    out = []
    for n in counts:
        s = DetDataSample(
            metainfo=dict(
                img_shape=(size, size),
                pad_shape=(size, size),
                batch_input_shape=(size, size),
                ori_shape=(size, size),
                scale_factor=(1., 1.)))
        s.gt_instances = InstanceData(bboxes=boxes[:n].clone(), labels=torch.tensor([0, 1, 0])[:n])
        out.append(s)
    return out


@pytest.fixture(scope='module')
def golsd_model():
    return build(GOLSD_DEMO)


def load_tool(name):
    """``tools/analysis/<name>.py`` as a module (the tools are scripts, not a package)."""
    path = os.path.join(ROOT, 'tools', 'analysis', f'{name}.py')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
