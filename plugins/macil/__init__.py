"""MACIL-SD: modality-aware contrastive instance learning with self-distillation.

``functional`` holds the maths on plain tensors (top-k MIL, semi-bags,
contrastive terms, λ ramp, parameter EMA, frame-level PR-AUC / AP) and
``modules`` the audio-visual network and the visual-only teacher with the
released checkpoint's key layout. No host library is imported here.

Paper: Yu, Liu, Cheng, Feng, Zhang, "Modality-Aware Contrastive Instance
Learning with Self-Distillation for Weakly-Supervised Audio-Visual Violence
Detection", ACM MM 2022, arXiv:2207.05500. "The reference" means the authors'
implementation, github.com/JustinYuu/MACIL_SD.
"""
from .functional import macil_loss
from .metrics import pr_auc, step_ap
from .models.networks import MACILAudioVisual, MACILVisualTeacher

#: host module -> this package's adapter modules, imported once the host is imported
HOST_ADAPTERS = {'mmengine': ['plugins.macil.mmengine']}

__all__ = [
    'HOST_ADAPTERS', 'MACILAudioVisual', 'MACILVisualTeacher', 'macil_loss', 'pr_auc', 'step_ap'
]
