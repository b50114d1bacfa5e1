"""What every reproduction's LightningModule shares: validation loss per target token, the optimiser
from the config, the attnrepro section of checkpoints (config, vocabularies, tokens seen) and exact
resumption (`ResumableMixin`). Subclasses add the loss and `_checkpoint_extra()`."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch

from .config import to_dict
from .optim import configure_optimizers, cooldown_factor
from .resume import ResumableMixin

CHECKPOINT_FORMAT = 1


class AttnreproModule(ResumableMixin, pl.LightningModule):
    task: str  # each task's module names its task (stored in checkpoints)

    def __init__(self, model: torch.nn.Module, cfg, reproduction: str):
        super().__init__()
        self.model, self.cfg, self.reproduction = model, cfg, reproduction
        self._tokens_read = 0  # target tokens trained on, all ranks together, as of the last read ...
        self._tokens_pending: torch.Tensor | None = None  # ... and since then, counted on the training device
        self._val_sums: list[torch.Tensor] = []
        self._cooldown_progress: float | None = None  # DDP: rank 0's budget progress, as last broadcast

    @property
    def monitor(self) -> tuple[str, str]:
        """The validation metric that chooses best.ckpt and stops early: (name, mode)."""
        return ("val/loss", "min")

    # Token counts stay on the device during training: reading one (`int(...)`) would make the host wait for
    # the GPU every step. `tokens_seen` reads them, at logging intervals, checkpoints and the end of a run.

    def _count_tokens(self, tokens: torch.Tensor) -> None:
        tokens = tokens.detach().to(torch.long)
        if self._tokens_pending is None or self._tokens_pending.device != tokens.device:
            self._tokens_read = self.tokens_seen
            self._tokens_pending = torch.zeros((), dtype=torch.long, device=tokens.device)
        self._tokens_pending += tokens

    @property
    def tokens_seen(self) -> int:
        """Target tokens trained on so far, all ranks together (reads the device counter)."""
        if self._tokens_pending is None:
            return self._tokens_read
        return self._tokens_read + int(self._tokens_pending)

    @tokens_seen.setter
    def tokens_seen(self, value: int) -> None:
        self._tokens_read, self._tokens_pending = int(value), None

    def _tokens_seen_tensor(self) -> torch.Tensor:
        """The running count as a float tensor for `self.log` (on_step metrics are read at logging intervals)."""
        return self._tokens_pending.float() + float(self._tokens_read)

    def _add_validation(self, nll_sum: torch.Tensor, tokens: torch.Tensor) -> None:
        self._val_sums.append(torch.stack([nll_sum.detach(), tokens.to(nll_sum.dtype)]))

    def on_validation_epoch_end(self) -> None:
        if not self._val_sums:
            return
        nll_sum, tokens = torch.stack(self._val_sums).sum(0)
        self._val_sums.clear()
        loss = nll_sum / tokens
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        self.log("val/ppl", torch.exp(loss), sync_dist=True)
        self.step_plateau(nll_sum, tokens)

    def step_plateau(self, nll_sum: torch.Tensor, tokens: torch.Tensor) -> None:
        """optim.schedule=plateau: one scheduler step per validation, on the validation NLL per token of all ranks
        together (so every rank halves its rate at the same validation)."""
        if self.cfg.optim.schedule != "plateau" or self.trainer.sanity_checking:
            return
        sums = torch.stack([nll_sum, tokens])
        if self.trainer.world_size > 1:
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        self.lr_schedulers().step(float(sums[0] / sums[1]))

    def configure_optimizers(self):
        return configure_optimizers(self.cfg.optim, self.model.parameters())

    # optim.cooldown scales the schedule's learning rate during the optimiser step only, so that schedulers
    # that read the rate back (ReduceLROnPlateau halves what it finds) keep their own value.

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        cooldown = self.cfg.optim.cooldown
        if not cooldown:
            return super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        factor = self._cooldown_factor(cooldown)
        scheduled = [group["lr"] for group in optimizer.param_groups]
        for group, lr in zip(optimizer.param_groups, scheduled):
            group["lr"] = lr * factor
        try:
            return super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        finally:
            for group, lr in zip(optimizer.param_groups, scheduled):
                group["lr"] = lr
            self.log("train/lr_cooldown", factor, batch_size=1)  # a float: no device read

    def _cooldown_factor(self, cooldown: float) -> float:
        """Every rank must step with the same rate: in DDP rank 0's clock decides, read every 10 steps."""
        trainer = self.trainer
        if trainer.world_size > 1:
            if trainer.global_step % 10 == 0 or self._cooldown_progress is None:
                self._cooldown_progress = trainer.strategy.broadcast(budget_progress(trainer), src=0)
            return cooldown_factor(self._cooldown_progress, cooldown)
        return cooldown_factor(budget_progress(trainer), cooldown)

    def _checkpoint_extra(self) -> dict:
        return {}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self._save_resume_state(checkpoint)
        checkpoint["attnrepro"] = {
            "format": CHECKPOINT_FORMAT,
            "task": self.task,
            "reproduction": self.reproduction,
            "config": to_dict(self.cfg),
            "tokens_seen": self.tokens_seen,
            "run_id": getattr(self, "run_id", None),  # which run wrote it: `evaluate` refuses another run's
            **self._checkpoint_extra(),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._load_resume_state(checkpoint)
        self.tokens_seen = checkpoint.get("attnrepro", {}).get("tokens_seen", 0)


def budget_progress(trainer) -> float:
    """How far through its budget a run is (0..1): the furthest along of elapsed time against
    `train.max_minutes` (Lightning's own Timer, the clock that stops the run, kept across resumption),
    steps against `max_steps` and epochs against `max_epochs`."""
    from pytorch_lightning.callbacks import Timer

    fractions = [0.0]
    if trainer.max_steps and trainer.max_steps > 0:
        fractions.append(trainer.global_step / trainer.max_steps)
    if trainer.max_epochs and trainer.max_epochs > 0 and math.isfinite(trainer.num_training_batches):
        batches = max(trainer.num_training_batches, 1)
        fractions.append((trainer.current_epoch + trainer.fit_loop.epoch_loop.batch_progress.current.ready / batches)
                         / trainer.max_epochs)
    for timer in (c for c in trainer.callbacks if isinstance(c, Timer)):
        elapsed, remaining = timer.time_elapsed("train"), timer.time_remaining("train")
        if remaining is not None and elapsed + remaining > 0:
            fractions.append(elapsed / (elapsed + remaining))
    return min(1.0, max(fractions))
