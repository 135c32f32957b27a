"""The FDR refine step shared by the DINO and Deformable-DETR decoders."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from mmdet.models.layers import inverse_sigmoid
from torch import Tensor, nn

from ...core.options import merge_options
from ..functional import decode_corners, distribution_integral, weighting_function

__all__ = ['FDRRefiner', 'fdr_config', 'ddf_options']

_DEFAULTS = dict(reg_max=32, reg_scale=4.0, up=0.5, T=None)  # T: DDF's, see ddf_options


def fdr_config(golsd: Optional[Dict] = None) -> Dict:
    """The GO-LSD settings with defaults filled in.

    Raises:
        ValueError: On an unknown key.
    """
    cfg = merge_options(_DEFAULTS, golsd, 'golsd')
    return cfg


def ddf_options(loss_ddf: Optional[Dict], golsd_t: Optional[float]) -> Optional[Dict]:
    """``loss_ddf`` with the temperature of ``golsd.T`` filled in (one value).

    Raises:
        ValueError: When both are given and differ.
    """
    if golsd_t is None:
        return loss_ddf
    cfg = dict(loss_ddf or {})
    if 'temperature' in cfg and float(cfg['temperature']) != float(golsd_t):
        raise ValueError(f"golsd.T = {golsd_t} and bbox_head.loss_ddf.temperature = "
                         f"{cfg['temperature']} disagree: set DDF's temperature in one place")
    cfg['temperature'] = golsd_t
    return cfg


class FDRRefiner(nn.Module):
    """Pre box, residual corner logits and decoding.

    Holds ``W`` as a non-persistent buffer, so a decoder that owns one keeps
    the host's ``state_dict`` keys.

    Args:
        golsd (dict): ``reg_max``, ``reg_scale``, ``up`` (``T`` is unused here).
    """

    def __init__(self, golsd: Optional[Dict] = None) -> None:
        super().__init__()
        self.golsd = fdr_config(golsd)
        self.reg_scale = float(self.golsd['reg_scale'])
        project = weighting_function(
            self.golsd['reg_max'], self.reg_scale, self.golsd['up'], dtype=torch.float64)
        self.register_buffer('project', project.float(), persistent=False)

    @staticmethod
    def pre_box(pre_head: nn.Module, query: Tensor, ref: Tensor, eps: float) -> Tensor:
        """``sigmoid(pre_head(h_0) + logit(ref))``; a 2-D ``ref`` (cx, cy) only
        shifts the first two outputs.

        Returns:
            Tensor: ``(B, Q, 4)`` cxcywh.
        """
        out = pre_head(query)
        logit = inverse_sigmoid(ref, eps=eps)
        if ref.shape[-1] == 4:
            return (out + logit).sigmoid()
        return torch.cat([out[..., :2] + logit, out[..., 2:]], -1).sigmoid()

    def step(self, branch: nn.Module, query: Tensor, h_prev: Optional[Tensor],
             acc: Optional[Tensor], anchors: Tensor) -> Tuple[Tensor, Tensor]:
        """One layer: ``Z_i = branch(h_i + sg(h_{i-1})) + Z_{i-1}``, decoded.

        Returns:
            tuple: ``(Z_i (B, Q, 4(R+1)), box_i (B, Q, 4))``; the box in fp32.
        """
        branch_in = query if h_prev is None else query + h_prev.detach()
        delta = branch(branch_in)
        acc = delta if acc is None else delta + acc
        with torch.autocast(device_type=acc.device.type, enabled=False):
            dist = distribution_integral(acc.float(), self.project)
            box = decode_corners(anchors.float(), dist, self.reg_scale)
        return acc, box
