"""``SLidRPretrainer``: the superpixel-driven distillation as an mmengine model."""
from __future__ import annotations

from typing import Dict, Optional

from mmengine.model import BaseModel
from mmengine.registry import MODELS
from torch import Tensor

from ...core.options import build_registered, check_kwargs
from ..functional import pool_pixels, pool_points, superpixel_slots
from ..models.image_teacher import FrozenImageTeacher
from ..models.sparse import SparseUNet

__all__ = ['SLidRPretrainer']


@MODELS.register_module()
class SLidRPretrainer(BaseModel):
    """Frozen 2D teacher + trainable 2D head, 3D student, superpixel InfoNCE.

    Args:
        student (dict): :class:`~plugins.slidr.models.sparse.SparseUNet` arguments
            (``out_channels`` = ``dim``).
        dim (int): Embedding size of both heads (64).
        superpixel_size (int): ``S`` (150).
        loss_nce (dict, optional): The contrastive loss,
            ``dict(type='SuperpixelNCELoss', temperature=0.07,
            kept_rule='first_channel', loss_weight=1.0)`` (the default;
            ``type`` may be left out). Built from the registry; a misspelled
            option is an error naming the nearest one.
        teacher_weights (str, optional): A MoCo-v2 / torchvision ResNet-50 file
            for the frozen encoder (random weights otherwise).

    ``forward(..., mode='loss')`` returns ``loss`` and ``kept`` (superpixels
    in the loss); the student is ``model.student`` (export it for the
    downstream tasks).
    """

    def __init__(self,
                 student: Optional[dict] = None,
                 dim: int = 64,
                 superpixel_size: int = 150,
                 loss_nce: Optional[dict] = None,
                 teacher_weights: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        check_kwargs(student, SparseUNet, 'model.student')
        cfg = dict(student or {})
        cfg.setdefault('out_channels', dim)
        if cfg['out_channels'] != dim:
            raise ValueError(f"student out_channels {cfg['out_channels']} must equal dim {dim}")
        self.student = SparseUNet(**cfg)
        self.teacher = FrozenImageTeacher(dim)
        if teacher_weights:
            from plugins.core.checkpoint import load_checkpoint
            self.teacher.load_encoder(load_checkpoint(teacher_weights))
        self.superpixel_size = superpixel_size
        self.loss_nce = build_registered(loss_nce, 'SuperpixelNCELoss', MODELS, 'model.loss_nce')
        self.training_only_modules = ('teacher', )

    def forward(self,
                coords: Tensor,
                feats: Tensor,
                images: Tensor,
                superpixels: Tensor,
                pairs: Tensor,
                mode: str = 'loss') -> Dict[str, Tensor]:
        """Raises:
            ValueError: On an unknown mode or pairings outside the batch.
        """
        if mode not in ('loss', 'tensor'):
            raise ValueError(f"mode must be 'loss' or 'tensor', got {mode!r}")
        f3 = self.student(coords, feats)
        if mode == 'tensor':
            return {'feats': f3}
        g2 = self.teacher(images)
        if g2.shape[-2:] != superpixels.shape[-2:]:
            raise ValueError(f'2D features {tuple(g2.shape[-2:])} and superpixel maps '
                             f'{tuple(superpixels.shape[-2:])} differ in size (crop sizes must '
                             f'be multiples of 4)')
        slots, num = superpixel_slots(superpixels, self.superpixel_size)
        pair_slots = slots[pairs[:, 1], pairs[:, 2], pairs[:, 3]]
        k, m = pool_points(f3, pairs[:, 0], pair_slots, num)
        q, _ = pool_pixels(g2, slots, num)
        loss, kept = self.loss_nce(k, q, m)
        return {'loss': loss, 'kept': loss.new_tensor(float(kept))}
