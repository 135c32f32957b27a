"""MACIL-SD maths on plain tensors.

Top-k MIL bag scores, semi-bag banks, the four modality-aware contrastive
terms, the λ ramp and the per-epoch parameter EMA of self-distillation (the
frame-level metrics are in :mod:`plugins.macil.metrics`). Shapes: ``B`` samples, ``T`` padded snippets,
``D`` features.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from plugins.core.functional import info_nce

__all__ = [
    'sequence_lengths', 'topk_sizes', 'topk_mean', 'mil_bag_scores', 'mil_loss', 'semi_bags',
    'semi_bags_loop', 'contrastive_terms', 'lambda_ramp', 'ema_momentum', 'ema_update_',
    'semi_bag_contrastive', 'weighted_total', 'macil_loss'
]

BANKS = ('G_A', 'G_V', 'V_A', 'V_V', 'N_A', 'N_V')


def sequence_lengths(visual: Tensor) -> Tensor:
    """``T_i``: rows of ``visual (B, T, D)`` whose max-abs value is > 0 (the
    data are zero-padded). Returns ``(B,)`` long.

    Raises:
        ValueError: On a non-3D input.
    """
    if visual.dim() != 3:
        raise ValueError(f'visual features must be (B, T, D), got {tuple(visual.shape)}')
    return (visual.abs().amax(dim=2) > 0).sum(dim=1)


def topk_sizes(lengths: Tensor) -> Tensor:
    """``k_i = ⌊T_i / 16⌋ + 1``."""
    return torch.div(lengths, 16, rounding_mode='floor') + 1


def _check_lengths(scores: Tensor, lengths: Tensor) -> None:
    if scores.dim() != 2:
        raise ValueError(f'snippet scores must be (B, T), got {tuple(scores.shape)}')
    if lengths.shape != scores.shape[:1]:
        raise ValueError(f'lengths must be (B,) = ({scores.shape[0]},), got '
                         f'{tuple(lengths.shape)}')
    if bool((lengths < 1).any()) or bool((lengths > scores.shape[1]).any()):
        raise ValueError(f'every sequence needs 1 <= T_i <= {scores.shape[1]} snippets; got '
                         f'lengths {lengths.tolist()} (an all-zero video has T_i = 0)')


def topk_mean(scores: Tensor, lengths: Tensor) -> Tensor:
    """Per sample, the mean of the ``k_i`` largest of ``scores[i, :T_i]``.

    Args:
        scores (Tensor): ``(B, T)``.
        lengths (Tensor): ``(B,)`` true lengths ``T_i``.

    Returns:
        Tensor: ``(B,)``.

    Raises:
        ValueError: On bad shapes or lengths outside ``[1, T]``.
    """
    _check_lengths(scores, lengths)
    ks = topk_sizes(lengths)
    kmax = int(ks.max())
    pad = torch.arange(scores.shape[1], device=scores.device)[None] >= lengths[:, None]
    masked = scores.masked_fill(pad, float('-inf'))
    top = masked.topk(min(kmax, scores.shape[1]), dim=1).values
    keep = torch.arange(top.shape[1], device=scores.device)[None] < ks[:, None]
    return (top * keep).nan_to_num(0.0, neginf=0.0).sum(1) / ks.to(scores.dtype)


def mil_bag_scores(logits: Tensor, lengths: Tensor) -> Tensor:
    """``S_i = σ(mean of the top-k_i pre-sigmoid logits)``, ``(B,)``."""
    return torch.sigmoid(topk_mean(logits, lengths))


def mil_loss(bag_scores: Tensor, labels: Tensor, reduction: str = 'mean') -> Tensor:
    """``mean_i BCE(S_i, y_i)`` on probabilities.

    Args:
        bag_scores (Tensor): ``(B,)`` bag probabilities ``S_i``.
        labels (Tensor): ``(B,)`` video labels in {0, 1}.
        reduction (str): ``'mean'`` (the paper's), ``'sum'`` or ``'none'``
            (one value per video, ``(B,)``).

    Raises:
        ValueError: On mismatched shapes or labels outside {0, 1}.
    """
    if bag_scores.shape != labels.shape:
        raise ValueError(f'bag scores {tuple(bag_scores.shape)} and labels '
                         f'{tuple(labels.shape)} differ in shape')
    if bool(((labels != 0) & (labels != 1)).any()):
        raise ValueError(f'video labels must be 0 or 1, got {labels.unique().tolist()}')
    return F.binary_cross_entropy(bag_scores, labels.to(bag_scores.dtype), reduction=reduction)


def _rank_indices(r: Tensor, t: int, k: int, largest: bool) -> Tensor:
    return r[:t].topk(k, largest=largest).indices


def semi_bags(rank_a: Tensor,
              rank_v: Tensor,
              rep_a: Tensor,
              rep_v: Tensor,
              bag_scores: Tensor,
              lengths: Tensor,
              threshold: float = 0.5) -> Dict[str, Tensor]:
    """The six semi-bag banks, rows appended in batch order.

    * background ``G_A``/``G_V``: every sample's ``R[bot_k(r)]`` (k rows);
    * violent ``V_A``/``V_V`` (predicted ``S_i > threshold``): the mean of
      ``R[top_k(r)]``, repeated ``k`` times;
    * normal ``N_A``/``N_V`` (``S_i ≤ threshold``): ``R[top_k(r)]``.

    Args:
        rank_a, rank_v (Tensor): ``(B, T)`` ranking scores ``r^A``, ``r^V``.
        rep_a, rep_v (Tensor): ``(B, T, D)`` representations ``R^A``, ``R^V``.
        bag_scores (Tensor): ``(B,)`` predicted ``S_i`` (never the labels).
        lengths (Tensor): ``(B,)`` ``T_i``.
        threshold (float): Violent iff ``S_i > threshold`` (ties are normal).

    Returns:
        dict: ``G_A, G_V, V_A, V_V, N_A, N_V``, each ``(rows, D)`` (possibly 0 rows).

    Raises:
        ValueError: On mismatched shapes or bad lengths.
    """
    _check_lengths(rank_a, lengths)
    if rank_v.shape != rank_a.shape or rep_a.shape[:2] != rank_a.shape or \
            rep_v.shape != rep_a.shape or bag_scores.shape != lengths.shape:
        raise ValueError(f'semi-bag inputs disagree: ranks {tuple(rank_a.shape)} / '
                         f'{tuple(rank_v.shape)}, representations {tuple(rep_a.shape)} / '
                         f'{tuple(rep_v.shape)}, bag scores {tuple(bag_scores.shape)}')
    ks = topk_sizes(lengths)
    kmax = int(ks.max()) if ks.numel() else 0
    if kmax == 0:
        empty = rep_a.new_zeros((0, rep_a.shape[2]))
        return {b: empty for b in BANKS}
    t = torch.arange(rank_a.shape[1], device=rank_a.device)
    pad = t[None] >= lengths[:, None]  # (B, T)
    keep = t[None, :kmax] < ks[:, None]  # (B, kmax): the k_i first
    violent = bag_scores > threshold  # (B,)
    out: Dict[str, Tensor] = {}
    for mod, r, rep in (('A', rank_a, rep_a), ('V', rank_v, rep_v)):
        d = rep.shape[2]
        low = r.masked_fill(pad, float('inf')).topk(kmax, dim=1, largest=False).indices
        high = r.masked_fill(pad, float('-inf')).topk(kmax, dim=1, largest=True).indices
        bottom = rep.gather(1, low.unsqueeze(-1).expand(-1, -1, d))  # (B, kmax, D)
        top = rep.gather(1, high.unsqueeze(-1).expand(-1, -1, d))
        out[f'G_{mod}'] = bottom[keep]  # batch order, k_i rows each
        out[f'N_{mod}'] = top[~violent][keep[~violent]]
        mean = (top * keep.unsqueeze(-1).to(top.dtype)).sum(1) / ks.unsqueeze(-1).to(top.dtype)
        out[f'V_{mod}'] = mean[violent].repeat_interleave(ks[violent], dim=0)
    return {b: out[b] for b in BANKS}


def semi_bags_loop(rank_a: Tensor,
                   rank_v: Tensor,
                   rep_a: Tensor,
                   rep_v: Tensor,
                   bag_scores: Tensor,
                   lengths: Tensor,
                   threshold: float = 0.5) -> Dict[str, Tensor]:
    """:func:`semi_bags` written sample by sample, as the reference builds them
    (one ``topk`` per sample and modality). Kept as the readable definition
    and the equivalence check of the batched version; the two agree up to the
    order of tied ranking scores."""
    _check_lengths(rank_a, lengths)
    ks = topk_sizes(lengths).tolist()
    rows: Dict[str, list] = {b: [] for b in BANKS}
    violent = (bag_scores > threshold).tolist()
    for i, (t, k) in enumerate(zip(lengths.tolist(), ks)):
        for mod, r, rep in (('A', rank_a, rep_a), ('V', rank_v, rep_v)):
            rows[f'G_{mod}'].append(rep[i, _rank_indices(r[i], t, k, largest=False)])
            top = rep[i, _rank_indices(r[i], t, k, largest=True)]
            if violent[i]:
                rows[f'V_{mod}'].append(top.mean(0, keepdim=True).expand(k, -1))
            else:
                rows[f'N_{mod}'].append(top)
    empty = rep_a.new_zeros((0, rep_a.shape[2]))
    return {b: torch.cat(v, 0) if v else empty for b, v in rows.items()}


def contrastive_terms(banks: Mapping[str, Tensor],
                      temperature: float = 0.1) -> Tuple[Dict[str, Tensor], bool]:
    """The four modality-aware InfoNCE terms (cosine similarities, shared
    negatives, positive at class 0).

    ============  =======  ========  =========
    term          query    positive  negatives
    ============  =======  ========  =========
    a2v_a2b       V_A      V_V       G_V
    a2v_a2n       V_A      V_V       N_V
    v2a_a2b       V_V      V_A       G_A
    v2a_a2n       V_V      V_A       N_A
    ============  =======  ========  =========

    Returns:
        tuple: ``(terms, degenerate)``; when ``N_A`` or ``V_A`` is empty every
        term is an exact, graph-connected 0 and ``degenerate`` is True.
    """
    spec = {
        'a2v_a2b': ('V_A', 'V_V', 'G_V'),
        'a2v_a2n': ('V_A', 'V_V', 'N_V'),
        'v2a_a2b': ('V_V', 'V_A', 'G_A'),
        'v2a_a2n': ('V_V', 'V_A', 'N_A')
    }
    if banks['N_A'].shape[0] == 0 or banks['V_A'].shape[0] == 0:
        zero = sum(b.sum() for b in banks.values()) * 0.0
        return {name: zero for name in spec}, True
    terms = {}
    for name, (q, p, n) in spec.items():
        terms[name] = info_nce(banks[q], banks[p], banks[n], temperature, normalize=True).mean()
    return terms, False


def lambda_ramp(epoch: int, step: float = 0.1, cap: float = 1.5) -> float:
    """``λ(e) = min(cap, step·e)`` for the 0-based epoch ``e``."""
    if epoch < 0:
        raise ValueError(f'epoch must be >= 0, got {epoch}')
    return min(cap, step * epoch)


def ema_momentum(epoch: int, base: float = 0.91, final: float = 1.0, period: int = 50) -> float:
    """``m_e = final + ½(base − final)(1 + cos(π·e/period))``."""
    return final + 0.5 * (base - final) * (1.0 + math.cos(math.pi * epoch / period))


def ema_update_(student: Iterable[Tuple[str, Tensor]],
                teacher: Mapping[str, Tensor],
                momentum: float,
                skip: Tuple[str, ...] = ('fc_a', ),
                key_map: Optional[Mapping[str, str]] = None) -> int:
    """``θ ← m·θ + (1 − m)·θ_T`` in place for every named student tensor not
    matching ``skip``; teacher names through ``key_map`` prefixes (e.g.
    ``{'att_mmil.fc': 'fc'}``). Computed as a scale, then an add.

    Returns:
        int: How many tensors were updated (0 when ``momentum == 1``).

    Raises:
        KeyError: If a student tensor has no teacher counterpart (names it).
        ValueError: On a shape mismatch.
    """
    if momentum == 1.0:
        return 0
    key_map = dict(key_map or {})
    count = 0
    with torch.no_grad():
        for name, param in student:
            if any(s in name for s in skip):
                continue
            other = name
            for src, dst in key_map.items():
                if name == src or name.startswith(src + '.'):
                    other = dst + name[len(src):]
            if other not in teacher:
                raise KeyError(f'no teacher tensor {other!r} for student tensor {name!r}')
            t = teacher[other]
            if t.shape != param.shape:
                raise ValueError(f'{name} {tuple(param.shape)} vs teacher {other} '
                                 f'{tuple(t.shape)}')
            scaled = t * (1.0 - momentum)
            param.mul_(momentum).add_(scaled)
            count += 1
    return count


def weighted_total(mil: Tensor, contrast: Mapping[str, Tensor], lambda_b: float,
                   lambda_n: float) -> Tensor:
    """``L_MIL + λ_b(L_a2v_a2b + L_v2a_a2b) + λ_n(L_a2v_a2n + L_v2a_a2n)``."""
    return (mil + lambda_b * (contrast['a2v_a2b'] + contrast['v2a_a2b']) + lambda_n *
            (contrast['a2v_a2n'] + contrast['v2a_a2n']))


def semi_bag_contrastive(outputs: Mapping[str, Tensor],
                         bag_scores: Tensor,
                         lengths: Tensor,
                         temperature: float = 0.1,
                         threshold: float = 0.5,
                         upstream_rep_swap: bool = True) -> Tuple[Dict[str, Tensor], bool]:
    """Semi-bags from the AV network's outputs and their four contrastive terms.

    Args:
        outputs (Mapping[str, Tensor]): ``prob_a``, ``prob_v`` ``(B, T)`` (the
            rankings) and ``feat_a``, ``feat_v`` ``(B, T, D)``.
        bag_scores (Tensor): ``(B,)`` predicted bag scores (detached here).
        lengths (Tensor): ``(B,)`` ``T_i``.
        temperature, threshold: τ and the violent/normal split.
        upstream_rep_swap (bool): The reference's binding ``R^A = z^v``,
            ``R^V = z^a`` (default, as trained for the published numbers);
            ``False`` uses ``R^A = z^a``, ``R^V = z^v``.

    Returns:
        tuple: ``(terms, degenerate)`` as :func:`contrastive_terms`.
    """
    if upstream_rep_swap:
        rep_a, rep_v = outputs['feat_v'], outputs['feat_a']
    else:
        rep_a, rep_v = outputs['feat_a'], outputs['feat_v']
    banks = semi_bags(outputs['prob_a'], outputs['prob_v'], rep_a, rep_v, bag_scores.detach(),
                      lengths, threshold)
    return contrastive_terms(banks, temperature)


def macil_loss(outputs: Mapping[str, Tensor],
               labels: Tensor,
               lengths: Tensor,
               lambda_b: float,
               lambda_n: float,
               temperature: float = 0.1,
               threshold: float = 0.5,
               upstream_rep_swap: bool = True) -> Tuple[Tensor, Dict[str, Tensor], bool]:
    """``L_AV = L_MIL + λ_b(L_a2v_a2b + L_v2a_a2b) + λ_n(L_a2v_a2n + L_v2a_a2n)``.

    Args:
        outputs (Mapping[str, Tensor]): The audio-visual network's ``logits``,
            ``prob_a``, ``prob_v`` ``(B, T)`` and ``feat_a``, ``feat_v``
            ``(B, T, D)``.
        labels (Tensor): ``(B,)`` video labels in {0, 1}.
        lengths (Tensor): ``(B,)`` ``T_i``.
        lambda_b, lambda_n (float): Contrastive weights of the epoch.
        temperature (float): τ (0.1).
        threshold (float): Semi-bag split on the predicted bag score (0.5).
        upstream_rep_swap (bool): See :func:`semi_bag_contrastive`.

    Returns:
        tuple: ``(total, terms, degenerate)``; ``terms`` holds ``mil`` and the
        four contrastive terms (graph-connected); ``degenerate`` marks a batch
        whose predictions fall on one side of the threshold (terms are 0).
    """
    bag = mil_bag_scores(outputs['logits'], lengths)
    terms = {'mil': mil_loss(bag, labels)}
    contrast, degenerate = semi_bag_contrastive(outputs, bag, lengths, temperature, threshold,
                                                upstream_rep_swap)
    terms.update(contrast)
    return weighted_total(terms['mil'], contrast, lambda_b, lambda_n), terms, degenerate
