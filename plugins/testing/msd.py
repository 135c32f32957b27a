"""A small Medical Segmentation Decathlon task, written in the real layout
(``dataset.json``, ``imagesTr`` / ``labelsTr`` / ``imagesTs`` NIfTI files) for
tests and the demo; :mod:`plugins.dsd.datasets.msd` reads it like a downloaded task."""
from __future__ import annotations

import json
import os

import numpy as np

__all__ = ['make_msd_synthetic', 'make_demo', 'FORMAT']

#: the format's name in ``tools/data/make_demo_data.py`` and under ``data/demo/``
FORMAT = 'msd'


def make_msd_synthetic(root: str,
                       task: str = 'Task90_Synthetic',
                       num_train: int = 8,
                       num_test: int = 2,
                       size: int = 32,
                       num_classes: int = 3,
                       seed: int = 0) -> str:
    """Write a small MSD-format task: ellipsoids of classes 1..C-1 in noise.

    Each foreground class has its own mean intensity, so a network can learn
    it from one channel. Volumes are ``size³`` with 1 mm spacing.

    Returns:
        str: The task folder.

    Raises:
        ValueError: On ``size < 16``, ``num_classes < 2`` or no training cases.
    """
    import nibabel as nib

    if size < 16 or num_classes < 2 or num_train < 1:
        raise ValueError(f'need size >= 16, num_classes >= 2, num_train >= 1; got '
                         f'{size}, {num_classes}, {num_train}')
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, task)
    for sub in ('imagesTr', 'labelsTr', 'imagesTs'):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    grid = np.stack(np.meshgrid(*(np.arange(size), ) * 3, indexing='ij'), -1).astype(np.float32)
    affine = np.eye(4)

    def volume():
        label = np.zeros((size, ) * 3, np.uint8)
        for c in range(1, num_classes):
            centre = rng.uniform(0.3, 0.7, 3) * size
            radii = rng.uniform(0.12, 0.22, 3) * size
            inside = (((grid - centre) / radii)**2).sum(-1) <= 1.0
            label[inside] = c
        image = rng.normal(0.0, 0.35, label.shape).astype(np.float32)
        for c in range(1, num_classes):
            image[label == c] += 1.0 + c
        return image, label

    training, test = [], []
    for i in range(num_train + num_test):
        image, label = volume()
        name = f'case_{i:03d}.nii.gz'
        if i < num_train:
            nib.save(nib.Nifti1Image(image, affine), os.path.join(folder, 'imagesTr', name))
            nib.save(nib.Nifti1Image(label, affine), os.path.join(folder, 'labelsTr', name))
            training.append({'image': f'./imagesTr/{name}', 'label': f'./labelsTr/{name}'})
        else:
            nib.save(nib.Nifti1Image(image, affine), os.path.join(folder, 'imagesTs', name))
            test.append(f'./imagesTs/{name}')
    meta = {
        'name': task.split('_', 1)[-1],
        'description': 'synthetic ellipsoids',
        'reference': 'generated',
        'licence': 'CC-BY-SA 4.0',
        'release': '1.0',
        'tensorImageSize': '3D',
        'modality': {
            '0': 'SYN'
        },
        'labels': {
            str(c): ('background' if c == 0 else f'class{c}')
            for c in range(num_classes)
        },
        'numTraining': num_train,
        'numTest': num_test,
        'training': training,
        'test': test,
    }
    with open(os.path.join(folder, 'dataset.json'), 'w') as f:
        json.dump(meta, f, indent=2)
    return folder


def make_demo(out: str, seed: int = 0, small: bool = False) -> str:
    """The demo's MSD task ``<out>/Task90_Synthetic``: 10 training volumes of 48³
    and 2 test volumes, 3 classes (``small``: 4 of 32³)."""
    return make_msd_synthetic(
        out,
        'Task90_Synthetic',
        num_train=4 if small else 10,
        num_test=2,
        size=32 if small else 48,
        num_classes=3,
        seed=seed)
