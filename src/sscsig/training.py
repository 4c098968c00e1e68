"""Shared helpers of the stages that train scvi-tools models (integrate: totalVI; tissue: scANVI):
progress logging per epoch, deterministic torch kernels, GPU detection."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

log = logging.getLogger(__name__)


def epoch_progress(max_epochs: int, *, model: str = "model", every: int | None = None,
                   logger: logging.Logger = log):
    """A Lightning callback that logs training progress: epoch, training and validation ELBO,
    elapsed time and the time left if every epoch runs (early stopping may end sooner). Logs the
    first epoch, then every ``every`` epochs (default: about 20 lines per run), and the last."""
    from lightning.pytorch.callbacks import Callback

    every = every or max(1, round(max_epochs / 20))

    class EpochProgress(Callback):
        def on_train_start(self, trainer, pl_module):
            self.t0 = time.time()

        def on_train_epoch_end(self, trainer, pl_module):
            done = trainer.current_epoch + 1
            if done == 1 or done % every == 0 or done == max_epochs:
                m = trainer.callback_metrics
                elapsed = time.time() - self.t0
                left = elapsed / done * (max_epochs - done)
                logger.info("%s epoch %d/%d: ELBO train %.2f, validation %.2f; %.0f s elapsed, at most "
                            "%.0f s left", model, done, max_epochs, float(m.get("elbo_train", float("nan"))),
                            float(m.get("elbo_validation", float("nan"))), elapsed, left)

    return EpochProgress()


def gpu_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def torch_threads(threads: int | None) -> None:
    """torch's CPU threads set to ``threads`` (a rule's: one count, the same results wherever the job
    runs); ``None`` or 0 leaves torch's setting."""
    if threads:
        import torch

        torch.set_num_threads(threads)


@contextmanager
def torch_deterministic():
    """torch's deterministic kernels for the block, then the caller's setting back."""
    import torch

    before = (torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


