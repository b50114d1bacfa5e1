"""optim.cooldown: the learning rate falls linearly to 0 over the last part of the run's budget, during the
optimiser step only, so that schedules reading the rate back (plateau) keep their own value."""

import pytest

from reproductions import registry
from reproductions.common.config import ConfigError
from reproductions.common.optim import configure_optimizers, cooldown_factor


@pytest.mark.parametrize("progress, expected", [(0.0, 1.0), (0.5, 1.0), (0.75, 1.0), (0.875, 0.5), (1.0, 0.0),
                                                (1.2, 0.0)])
def test_cooldown_factor_is_one_then_linear_to_zero(progress, expected):
    assert cooldown_factor(progress, 0.25) == pytest.approx(expected)
    assert cooldown_factor(progress, 0.0) == 1.0  # no cooldown: the schedule as it is


def test_cooldown_outside_zero_to_one_is_a_named_error():
    cfg = registry.get("cho2014").load_config("tiny", ["optim.cooldown=1.5"])
    with pytest.raises(ConfigError, match="optim.cooldown"):
        configure_optimizers(cfg.optim, [])


@pytest.mark.parametrize("schedule", ["plateau", "inverse_sqrt"])
def test_steps_take_the_cooled_rate_and_the_schedule_keeps_its_own(schedule, data_root, tmp_path):
    import pytorch_lightning as pl

    from reproductions.translation.data.datamodule import TranslationDataModule
    from reproductions.translation.module import TranslationModule

    class RecordRates(pl.Callback):
        def __init__(self):
            self.stepped, self.scheduled = [], []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):  # inside the step: the rate used
            self.stepped.append(optimizer.param_groups[0]["lr"])

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # the schedule's own
            self.scheduled.append(trainer.optimizers[0].param_groups[0]["lr"])

    repro = registry.get("cho2014")
    cfg = repro.load_config("tiny", ["data.train_limit=64", "data.eval_limit=8", "data.max_tokens=200",
                                     f"optim.schedule={schedule}", "optim.warmup_steps=1", "optim.lr=0.01",
                                     "optim.cooldown=0.5"])
    data = TranslationDataModule(cfg.data, seed=0, cache_dir=tmp_path)
    data.load()
    module = TranslationModule(repro.build(cfg, len(data.src_vocab), len(data.tgt_vocab)), cfg, "cho2014",
                               data.src_vocab, data.tgt_vocab)
    recorder = RecordRates()
    trainer = pl.Trainer(max_steps=8, max_epochs=100, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, use_distributed_sampler=False,
                         accelerator="cpu", callbacks=[recorder], num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(module, datamodule=data)
    assert len(recorder.stepped) == 8
    # step s (0-based) runs at progress s/8: full rate for the first half, then 1 - (s/8 - 0.5)/0.5
    factors = [min(1.0, (1 - s / 8) / 0.5) for s in range(8)]
    before_step = [0.01] + recorder.scheduled[:-1]  # the schedule's rate going into each step
    assert recorder.stepped == pytest.approx([lr * f for lr, f in zip(before_step, factors)])
    assert recorder.stepped[-1] < recorder.stepped[3] / 3
    if schedule == "plateau":  # nothing to halve on: the schedule's own rate is untouched by the cooldown
        assert recorder.scheduled == pytest.approx([0.01] * 8)


def test_the_plateau_schedule_steps_once_per_validation_not_at_epoch_ends(data_root, tmp_path):
    """A step budget that validates every 5 steps over epochs of a few batches (the `cpu` presets validate every
    275 steps over ~236-step epochs): the first epoch ends before any validation, later ones would read one
    validation twice. The schedule takes one step per validation, and nothing at epoch ends."""
    import pytorch_lightning as pl

    from reproductions.translation.data.datamodule import TranslationDataModule
    from reproductions.translation.module import TranslationModule

    repro = registry.get("cho2014")
    cfg = repro.load_config("tiny", ["data.train_limit=32", "data.eval_limit=8", "data.max_tokens=200",
                                     "optim.schedule=plateau", "optim.plateau_patience=0", "optim.lr=0.01"])
    data = TranslationDataModule(cfg.data, seed=0, cache_dir=tmp_path)
    data.load()
    module = TranslationModule(repro.build(cfg, len(data.src_vocab), len(data.tgt_vocab)), cfg, "cho2014",
                               data.src_vocab, data.tgt_vocab)
    trainer = pl.Trainer(max_steps=12, max_epochs=100, val_check_interval=5, check_val_every_n_epoch=None,
                         logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, use_distributed_sampler=False, accelerator="cpu",
                         num_sanity_val_steps=0)
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 12 and trainer.current_epoch >= 2  # the budget crossed several epoch ends
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == 2  # validations at steps 5 and 10
