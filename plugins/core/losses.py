"""Registered distillation losses in mmdet style.

Each module only holds ``reduction`` / ``loss_weight`` and the method's options
and calls :mod:`plugins.core.functional`. They are plain ``nn.Module`` s, so a
MONAI bundle can name them by ``"_target_": "plugins.core.losses.InfoNCELoss"``;
when mmengine is imported they are also registered in its root ``MODELS``
registry, which mmdet's and mmseg's registries fall back to.
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from .functional import check_temperature, info_nce, temperature_kl
from .reduction import check_reduction, weight_reduce

__all__ = ['TemperatureKLLoss', 'InfoNCELoss']


class _WeightedLoss(nn.Module):
    """Shared ``reduction`` / ``loss_weight`` handling."""

    def __init__(self, reduction: str = 'mean', loss_weight: float = 1.0):
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.loss_weight = float(loss_weight)

    def _reduction(self, override: Optional[str]) -> str:
        if override is None:
            return self.reduction
        return check_reduction(override, 'reduction_override')

    def extra_repr(self) -> str:
        return f'reduction={self.reduction!r}, loss_weight={self.loss_weight}'


class TemperatureKLLoss(_WeightedLoss):
    """T²-scaled KL divergence from teacher logits to student logits.

    Args:
        temperature (float): Softmax temperature ``T > 0``.
        class_dim (int): Class (or bin) axis of the logits.
        class_reduction (str): ``'sum'`` (KL proper) or ``'mean'`` over it.
        detach_teacher (bool): Stop the gradient at the teacher.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'`` over positions.
        loss_weight (float): Multiplier of the result.

    Raises:
        ValueError: On a bad temperature or reduction option.

    Example:
        >>> loss = TemperatureKLLoss(temperature=3.0)
        >>> loss(torch.randn(2, 5, 8), torch.randn(2, 5, 8)).shape
        torch.Size([])
    """

    def __init__(self,
                 temperature: float = 1.0,
                 class_dim: int = 1,
                 class_reduction: str = 'sum',
                 detach_teacher: bool = True,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__(reduction, loss_weight)
        self.temperature = check_temperature(temperature)
        if class_reduction not in ('sum', 'mean'):
            raise ValueError(f"class_reduction must be 'sum' or 'mean', got "
                             f'{class_reduction!r}')
        self.class_dim = class_dim
        self.class_reduction = class_reduction
        self.detach_teacher = detach_teacher

    def forward(self,
                pred: Tensor,
                target: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """Compute the loss.

        Args:
            pred (Tensor): Student logits ``(N, C, *)`` (class axis
                ``class_dim``).
            target (Tensor): Teacher logits, same shape.
            weight (Tensor, optional): Per-position weight, broadcastable to
                ``(N, *)``.
            avg_factor (float, optional): Denominator for ``'mean'``.
            reduction_override (str, optional): Overrides ``reduction``.

        Returns:
            Tensor: Scalar, or ``(N, *)`` with ``reduction='none'``.
        """
        kl = temperature_kl(pred, target, self.temperature, self.class_dim, self.class_reduction,
                            self.detach_teacher)
        return self.loss_weight * weight_reduce(kl, weight, self._reduction(reduction_override),
                                                avg_factor)

    def extra_repr(self) -> str:
        return (f'temperature={self.temperature}, '
                f'class_reduction={self.class_reduction!r}, '
                f'detach_teacher={self.detach_teacher}, ' + super().extra_repr())


class InfoNCELoss(_WeightedLoss):
    """InfoNCE with temperature (in-batch or shared negatives).

    Args:
        temperature (float): ``τ > 0``.
        normalize (bool): Use cosine similarity (L2-normalise rows first).
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'`` over query rows.
        loss_weight (float): Multiplier of the result.

    Raises:
        ValueError: On a bad temperature or reduction.
    """

    def __init__(self,
                 temperature: float = 0.07,
                 normalize: bool = False,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__(reduction, loss_weight)
        self.temperature = check_temperature(temperature)
        self.normalize = normalize

    def forward(self,
                pred: Tensor,
                target: Tensor,
                negatives: Optional[Tensor] = None,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """Compute the loss.

        Args:
            pred (Tensor): Queries ``(N, D)``.
            target (Tensor): Positives ``(N, D)`` (in-batch: ``(M ≥ N, D)``).
            negatives (Tensor, optional): Shared negatives ``(M, D)``.
            weight (Tensor, optional): Per-row weight ``(N,)``.
            avg_factor (float, optional): Denominator for ``'mean'``.
            reduction_override (str, optional): Overrides ``reduction``.

        Returns:
            Tensor: Scalar, or ``(N,)`` with ``reduction='none'``.
        """
        per_row = info_nce(pred, target, negatives, self.temperature, self.normalize)
        return self.loss_weight * weight_reduce(per_row, weight,
                                                self._reduction(reduction_override), avg_factor)

    def extra_repr(self) -> str:
        return (f'temperature={self.temperature}, normalize={self.normalize}, ' +
                super().extra_repr())
