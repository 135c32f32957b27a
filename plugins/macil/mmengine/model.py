"""``MACILSD``: the audio-visual network and its visual-only teacher, trained
with two optimizers in one mmengine model."""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Union

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapperDict
from mmengine.registry import MODELS
from torch import Tensor

from ...core.options import build_registered, check_kwargs
from ..functional import sequence_lengths, weighted_total
from ..models.networks import MACILAudioVisual, MACILVisualTeacher

__all__ = ['MACILSD']

_DEFAULT_CONTRASTIVE = dict(
    type='SemiBagContrastiveLoss', temperature=0.1, bag_threshold=0.5, upstream_rep_swap=True)


def _plain_keys(module, state_dict, prefix, local_metadata):
    """Save ``av.*`` / ``teacher.*`` even while each sits in its own DDP
    wrapper (``MMSeparateDistributedDataParallel`` would write ``av.module.*``);
    mmengine's loader unwraps when loading, so checkpoints stay portable."""
    for name in ('av', 'teacher'):
        wrapped = f'{prefix}{name}.module.'
        for key in [k for k in state_dict if k.startswith(wrapped)]:
            state_dict[f'{prefix}{name}.{key[len(wrapped):]}'] = state_dict.pop(key)
    return state_dict


@MODELS.register_module()
class MACILSD(BaseModel):
    """MACIL-SD for the mmengine Runner.

    Args:
        teacher (bool): Train the visual-only teacher (self-distillation by the
            EMA hook).
        loss_mil (dict, optional): The top-k MIL loss for both nets,
            ``dict(type='TopKMILLoss', loss_weight=1.0)`` (the default; ``type``
            may be left out).
        loss_contrastive (dict, optional): The semi-bag contrastive loss,
            ``dict(type='SemiBagContrastiveLoss', temperature=0.1,
            bag_threshold=0.5, upstream_rep_swap=True, loss_weight=1.0)``.
            ``None`` with ``teacher=False`` is the plain top-k MIL baseline on
            the same network. Both are built from the registry and their keys
            checked: a misspelled option is an error naming the nearest one.
        network (dict, optional): Keyword arguments of both networks (sizes,
            ``mask_padding``).

    Attributes:
        lambda_b, lambda_n (float): Contrastive weights, set each epoch by
            :class:`~plugins.macil.mmengine.MACILLambdaHook` (0 until then).

    Raises:
        KeyError: If a loss ``type`` is not registered.
        ValueError: On an unknown loss or network option.

    The optim wrapper must be a dict with ``av`` (and ``teacher``) entries,
    e.g. ``constructor='SubmoduleOptimWrapperConstructor'``. Each iteration
    runs both forwards, then steps the AV network on ``L_AV`` and the teacher
    on its own MIL loss (kept out of the summed ``loss``).
    """

    def __init__(self,
                 teacher: bool = True,
                 loss_mil: Optional[dict] = None,
                 loss_contrastive: Optional[dict] = _DEFAULT_CONTRASTIVE,
                 network: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        check_kwargs(network, MACILAudioVisual, 'model.network')
        net = dict(network or {})
        self.av = MACILAudioVisual(**net)
        net.pop('audio_dim', None)
        self.teacher = MACILVisualTeacher(**net) if teacher else None
        self.loss_mil = build_registered(loss_mil, 'TopKMILLoss', MODELS, 'model.loss_mil')
        self.loss_contrastive = (
            build_registered(loss_contrastive, 'SemiBagContrastiveLoss', MODELS,
                             'model.loss_contrastive') if loss_contrastive is not None else None)
        self.lambda_b = 0.0
        self.lambda_n = 0.0
        self.training_only_modules = ('teacher', )
        self._degenerate_batches = 0
        self._register_state_dict_hook(_plain_keys)

    # ------------------------------------------------------------------ losses
    def _cut(self, visual: Tensor, audio: Tensor):
        if visual.dim() != 3 or visual.shape[0] == 0:
            raise ValueError(f'expected a non-empty batch of visual features (B, T, D), got '
                             f'{tuple(visual.shape)}')
        if visual.shape[:2] != audio.shape[:2]:
            raise ValueError(f'visual {tuple(visual.shape)} and audio {tuple(audio.shape)} '
                             f'must share batch and length')
        lengths = sequence_lengths(visual)
        if bool((lengths == 0).any()):
            bad = torch.nonzero(lengths == 0)[:, 0].tolist()
            raise ValueError(f'samples {bad} have all-zero visual features (no snippets)')
        t = int(lengths.max())
        return visual[:, :t], audio[:, :t], lengths

    def _av_loss(self, visual: Tensor, audio: Tensor, labels: Tensor,
                 lengths: Tensor) -> Dict[str, Tensor]:
        out = self.av(visual, audio, lengths)
        mil, bag = self.loss_mil(out['logits'], labels, lengths)
        logs = {'loss': mil, 'mil': mil.detach()}
        if self.loss_contrastive is None:
            return logs
        terms, degenerate = self.loss_contrastive(out, bag, lengths)
        if degenerate:
            self._degenerate_batches += 1
            if self._degenerate_batches in (1, 10, 100, 1000):
                print_log(
                    f'MACIL-SD: {self._degenerate_batches} batch(es) so far with all '
                    f'predictions on one side of {self.loss_contrastive.bag_threshold}; '
                    f'their contrastive terms are 0',
                    logger='current',
                    level=logging.INFO)
        logs['loss'] = weighted_total(mil, terms, self.lambda_b, self.lambda_n)
        logs.update({f'cma_{k}': v.detach() for k, v in terms.items()})
        return logs

    def _teacher_loss(self, visual: Tensor, labels: Tensor, lengths: Tensor) -> Tensor:
        return self.loss_mil(self.teacher(visual, lengths=lengths)['logits'], labels, lengths)[0]

    def train_step(self, data: Union[dict, tuple, list],
                   optim_wrapper: OptimWrapperDict) -> Dict[str, Tensor]:
        """One iteration: both forwards, AV step on ``L_AV``, teacher step on
        ``L_T`` (grads zeroed before each).

        Raises:
            TypeError: If ``optim_wrapper`` lacks the ``av`` (or ``teacher``)
                entry.
        """
        need = ['av'] + (['teacher'] if self.teacher is not None else [])
        if not isinstance(optim_wrapper, OptimWrapperDict) or \
                any(k not in optim_wrapper for k in need):
            raise TypeError(f'MACILSD needs an optim wrapper dict with {need}; use '
                            f"constructor='SubmoduleOptimWrapperConstructor'")
        data = self.data_preprocessor(data, True)
        visual, audio, lengths = self._cut(data['visual'], data['audio'])
        labels = data['labels']
        with optim_wrapper['av'].optim_context(self.av):
            logs = self._av_loss(visual, audio, labels, lengths)
        teacher_loss = None
        if self.teacher is not None:
            with optim_wrapper['teacher'].optim_context(self.teacher):
                teacher_loss = self._teacher_loss(visual, labels, lengths)
        optim_wrapper['av'].update_params(logs['loss'])
        if teacher_loss is not None:
            optim_wrapper['teacher'].update_params(teacher_loss)
            logs['teacher_mil'] = teacher_loss.detach()
        logs['lambda'] = torch.tensor(self.lambda_b, device=labels.device)
        return {k: v.detach() for k, v in logs.items()}

    # ----------------------------------------------------------------- forward
    def forward(self,
                visual,
                audio,
                labels=None,
                index=None,
                mode: str = 'tensor') -> Union[Dict[str, Tensor], List[dict]]:
        """``mode='loss'``: ``loss`` (= ``L_AV``) and logged terms (the
        teacher's MIL as ``teacher_mil``, never summed); ``'predict'``: per test
        video ``dict(scores (T,), label, index)`` with scores the mean over its
        crops of ``σ(s_t)``; ``'tensor'``: the AV outputs.

        Raises:
            ValueError: On an unknown mode or bad inputs.
        """
        if mode == 'predict':
            return self._predict(visual, audio, labels, index)
        if mode == 'tensor':
            return self.av(visual, audio)
        if mode == 'loss':
            visual, audio, lengths = self._cut(visual, audio)
            logs = self._av_loss(visual, audio, labels, lengths)
            if self.teacher is not None:
                logs['teacher_mil'] = self._teacher_loss(visual, labels, lengths).detach()
            return logs
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

    def _predict(self, visual, audio, labels, index) -> List[dict]:
        if isinstance(visual, Tensor) and visual.dim() == 3:  # one video
            visual, audio = [visual], [audio]
        labels = labels if labels is not None else [None] * len(visual)
        index = index if index is not None else [None] * len(visual)
        out = []
        for v, a, y, i in zip(visual, audio, labels, index):
            if v.shape[:2] != a.shape[:2]:
                raise ValueError(f'test video {i}: audio {tuple(a.shape)} and visual '
                                 f'{tuple(v.shape)} differ in crops or length')
            probs = torch.sigmoid(self.av(v, a)['logits'])  # (crops, T)
            out.append(dict(scores=probs.mean(0), label=y, index=i))
        return out
