"""MACIL-SD networks with the released checkpoint's key layout.

    MACILAudioVisual   fc_v, fc_a, cma.layer (cross-attention both ways, shared),
                       att_mmil.fc (shared scorer); 347,009 parameters
    MACILVisualTeacher fc_v, self-attention layer, fc; 330,497 parameters

Both carry the reference's unused ``multiheadattn`` / ``feedforward`` modules
(and the layer's unused ``self_attn.layer_norm``): they are in the released
state dict, the parameter counts and the EMA, and never run.
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..functional import sequence_lengths

__all__ = [
    'MultiHeadAttention', 'FeedForward', 'PreNormLayer', 'MACILAudioVisual', 'MACILVisualTeacher',
    'padding_mask'
]


class MultiHeadAttention(nn.Module):
    """Four ``Linear(D, D)`` maps (query, key, value, output), ``H`` heads,
    dropout on the attention probabilities. ``layer_norm`` exists for the key
    layout only (never applied).

    Args:
        dim (int): ``D`` (128).
        heads (int): ``H`` (4).
        dropout (float): Attention-probability dropout (0.1).

    Raises:
        ValueError: If ``dim`` is not divisible by ``heads``.
    """

    def __init__(self, dim: int = 128, heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f'dim {dim} is not divisible by heads {heads}')
        self.heads = heads
        self.linears = nn.ModuleList([nn.Linear(dim, dim) for _ in range(4)])
        self.layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self,
                query: Tensor,
                key: Tensor,
                value: Tensor,
                key_mask: Optional[Tensor] = None) -> Tensor:
        """``(B, Tq, D)``, ``(B, Tk, D)``, ``(B, Tk, D)`` → ``(B, Tq, D)``.

        ``key_mask (B, Tk)`` bool, True for keys to attend to (None: all). A
        query whose keys are all masked attends to all of them uniformly
        instead of producing NaN.
        """
        b, tq, d = query.shape
        dh = d // self.heads

        def split(x: Tensor, lin: nn.Module) -> Tensor:
            return lin(x).view(b, -1, self.heads, dh).transpose(1, 2)

        q, k, v = (split(x, lin) for x, lin in zip((query, key, value), self.linears[:3]))
        att = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(dh)
        if key_mask is not None:
            att = att.masked_fill(~key_mask[:, None, None, :], torch.finfo(att.dtype).min)
        att = self.dropout(att.softmax(dim=-1))
        out = torch.matmul(att, v).transpose(1, 2).reshape(b, tq, d)
        return self.linears[3](out)


class FeedForward(nn.Module):
    """``w_2 · Drop(ReLU(w_1 z))`` (D → F → D)."""

    def __init__(self, dim: int = 128, hidden: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        self.w_1 = nn.Linear(dim, hidden)
        self.w_2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_2(self.dropout(F.relu(self.w_1(x))))


class _Sublayer(nn.Module):
    """Holds one pre-norm LayerNorm (key ``sublayer.i.norm``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)


class PreNormLayer(nn.Module):
    """``u = q + Drop(MHA(LN_1(q), c, c))``, ``out = u + Drop(FFN(LN_2(u)))``.

    Only the query stream is normalised; keys and values enter as they are. No
    positional encoding; a key mask only when given (the reference has none).
    """

    def __init__(self,
                 dim: int = 128,
                 heads: int = 4,
                 hidden: int = 128,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(dim, heads, dropout)
        self.feed_forward = FeedForward(dim, hidden, dropout)
        self.sublayer = nn.ModuleList([_Sublayer(dim), _Sublayer(dim)])
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: Tensor, context: Tensor, key_mask: Optional[Tensor] = None) -> Tensor:
        """``(B, Tq, D)`` queries over ``(B, Tk, D)`` context (``key_mask (B, Tk)``
        True where a context row is real) → ``(B, Tq, D)``."""
        q = self.sublayer[0].norm(query)
        u = query + self.dropout(self.self_attn(q, context, context, key_mask))
        return u + self.dropout(self.feed_forward(self.sublayer[1].norm(u)))


def padding_mask(visual: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
    """``(B, T)`` bool, True for the first ``T_i`` snippets (``lengths``, or
    counted from the non-zero rows of ``visual (B, T, D)``).

    Raises:
        ValueError: If ``lengths`` is not ``(B,)``.
    """
    if lengths is None:
        lengths = sequence_lengths(visual)
    if lengths.shape != visual.shape[:1]:
        raise ValueError(f'lengths must be ({visual.shape[0]},), got {tuple(lengths.shape)}')
    return torch.arange(visual.shape[1], device=visual.device)[None, :] < lengths[:, None]


class _CMA(nn.Module):
    """Key prefix ``cma.layer``."""

    def __init__(self, layer: PreNormLayer) -> None:
        super().__init__()
        self.layer = layer


class _Scorer(nn.Module):
    """Key prefix ``att_mmil.fc``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, 1)


class MACILAudioVisual(nn.Module):
    """The audio-visual network (the deployed model).

    Args:
        visual_dim (int): I3D feature size (1024).
        audio_dim (int): VGGish feature size (128).
        dim, heads, hidden, dropout: Transformer layer sizes (128, 4, 128, 0.1).
        mask_padding (bool): Keep zero-padded snippets (``t ≥ T_i``) out of
            the attention's keys (not the reference: there padded rows act as
            keys; spec pitfall 3). Default False.

    ``forward(visual (B,T,1024), audio (B,T,128), lengths=None)`` returns a dict with
    ``logits`` ``s = s^a + s^v`` (B,T), ``logits_a``, ``logits_v`` (B,T),
    ``prob_a = σ(s^a)``, ``prob_v = σ(s^v)`` and ``feat_v = z^v``,
    ``feat_a = z^a`` (B,T,D).

    Raises:
        ValueError: On mismatched batch / length or feature sizes.
    """

    def __init__(self,
                 visual_dim: int = 1024,
                 audio_dim: int = 128,
                 dim: int = 128,
                 heads: int = 4,
                 hidden: int = 128,
                 dropout: float = 0.1,
                 mask_padding: bool = False) -> None:
        super().__init__()
        self.mask_padding = mask_padding
        self.multiheadattn = MultiHeadAttention(dim, heads, dropout)  # unused (layout)
        self.feedforward = FeedForward(dim, hidden, dropout)  # unused (layout)
        self.fc_v = nn.Linear(visual_dim, dim)
        self.fc_a = nn.Linear(audio_dim, dim)
        self.cma = _CMA(PreNormLayer(dim, heads, hidden, dropout))
        self.att_mmil = _Scorer(dim)

    def forward(self,
                visual: Tensor,
                audio: Tensor,
                lengths: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """``lengths (B,)``: ``T_i``, used with ``mask_padding`` only (counted
        from the visual rows when None)."""
        if visual.dim() != 3 or audio.dim() != 3 or visual.shape[:2] != audio.shape[:2]:
            raise ValueError(f'visual (B, T, {self.fc_v.in_features}) and audio '
                             f'(B, T, {self.fc_a.in_features}) must share B and T; got '
                             f'{tuple(visual.shape)} and {tuple(audio.shape)}')
        for name, x, lin in (('visual', visual, self.fc_v), ('audio', audio, self.fc_a)):
            if x.shape[-1] != lin.in_features:
                raise ValueError(f'{name} features have {x.shape[-1]} dims, the network '
                                 f'expects {lin.in_features} ({name}_dim); got '
                                 f'{tuple(x.shape)}. Check the feature files or set '
                                 f'{name}_dim in the model config')
        mask = padding_mask(visual, lengths) if self.mask_padding else None
        h_v, h_a = self.fc_v(visual), self.fc_a(audio)
        z_v = self.cma.layer(h_v, h_a, mask)
        z_a = self.cma.layer(h_a, h_v, mask)
        s_a = self.att_mmil.fc(z_a)[..., 0]
        s_v = self.att_mmil.fc(z_v)[..., 0]
        return dict(
            logits=s_a + s_v,
            logits_a=s_a,
            logits_v=s_v,
            prob_a=torch.sigmoid(s_a),
            prob_v=torch.sigmoid(s_v),
            feat_v=z_v,
            feat_a=z_a)


class MACILVisualTeacher(nn.Module):
    """The visual-only teacher: ``fc_v`` → self-attention layer → ``fc``.

    Its layer is ``cma.layer`` too, so the EMA maps names one to one (the
    scorer is ``fc``). ``forward(visual, lengths=None)`` returns
    ``dict(logits (B,T))``; ``mask_padding`` as in :class:`MACILAudioVisual`.
    """

    def __init__(self,
                 visual_dim: int = 1024,
                 dim: int = 128,
                 heads: int = 4,
                 hidden: int = 128,
                 dropout: float = 0.1,
                 mask_padding: bool = False) -> None:
        super().__init__()
        self.mask_padding = mask_padding
        self.multiheadattn = MultiHeadAttention(dim, heads, dropout)  # unused (layout)
        self.feedforward = FeedForward(dim, hidden, dropout)  # unused (layout)
        self.fc_v = nn.Linear(visual_dim, dim)
        self.cma = _CMA(PreNormLayer(dim, heads, hidden, dropout))
        self.fc = nn.Linear(dim, 1)

    def forward(self,
                visual: Tensor,
                audio: Optional[Tensor] = None,
                lengths: Optional[Tensor] = None) -> Dict[str, Tensor]:
        if visual.dim() != 3:
            raise ValueError(f'visual must be (B, T, D), got {tuple(visual.shape)}')
        mask = padding_mask(visual, lengths) if self.mask_padding else None
        h = self.fc_v(visual)
        return dict(logits=self.fc(self.cma.layer(h, h, mask))[..., 0])
