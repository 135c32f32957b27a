"""Log DSD's eleven terms with MONAI's handlers (StatsHandler, TensorBoard)."""
from __future__ import annotations

from typing import Any

from ..losses import DSDLoss

__all__ = ['DSDTermsHandler']


class DSDTermsHandler:
    """After each iteration, put ``loss.last_terms`` into ``engine.state.metrics``.

    MONAI's ``StatsHandler`` and ``TensorBoardStatsHandler`` log
    ``engine.state.metrics`` at iteration level, so the terms appear next to
    the loss (``dsd_ds_main``, ``dsd_kd_enc1``, ...)::

        DSDTermsHandler(loss_function).attach(trainer)

    In a bundle: ``{"_target_": "plugins.dsd.monai.DSDTermsHandler",
    "loss": "@loss"}`` among the trainer's ``train_handlers``.

    Args:
        loss (DSDLoss): The loss whose terms to log.
        prefix (str): Prefix of the metric names.

    Raises:
        TypeError: If ``loss`` is not a :class:`DSDLoss`.
    """

    def __init__(self, loss: DSDLoss, prefix: str = 'dsd_') -> None:
        if not isinstance(loss, DSDLoss):
            raise TypeError(f'DSDTermsHandler logs the terms of a DSDLoss, got '
                            f'{type(loss).__name__}')
        self.loss = loss
        self.prefix = prefix

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Any) -> None:
        for name, value in self.loss.last_terms.items():
            engine.state.metrics[f'{self.prefix}{name}'] = float(value)
