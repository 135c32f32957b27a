"""SLidR: image-to-lidar superpixel-driven contrastive distillation.

``functional`` holds the maths on plain tensors: the lidar→camera projection
chain, cylindrical voxelisation, superpixel slot maps, superpixel pooling of
point and pixel features, and the superpixel InfoNCE loss. No host library is
imported here.

Paper: Sautier et al., "Image-to-Lidar Self-Supervised Distillation for
Autonomous Driving Data", CVPR 2022, arXiv:2203.16258. "The reference" means
the authors' implementation, github.com/valeoai/SLidR.
"""
from .functional import pool_pixels, pool_points, superpixel_nce, superpixel_slots
from .geometry import cylindrical_voxelize, project_points

#: host module -> this package's adapter modules, imported once the host is imported
HOST_ADAPTERS = {'mmengine': ['plugins.slidr.mmengine']}

__all__ = [
    'HOST_ADAPTERS', 'project_points', 'cylindrical_voxelize', 'superpixel_slots', 'pool_points',
    'pool_pixels', 'superpixel_nce'
]
