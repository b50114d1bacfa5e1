"""`attnrepro train`: fit a reproduction under Lightning, then score the test splits that are present."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.plugins.io import TorchCheckpointIO

from reproductions import registry, tasks
from reproductions.common import rundir
from reproductions.common.config import to_dict
from reproductions.common.data.sources import cache_root
from reproductions.common.errors import AttnreproError
from reproductions.common.flops import flops_per_target_token
from reproductions.common.io import atomic_path
from reproductions.common.precision import resolve_precision


def wandb_mode(requested: str | None) -> str:
    """offline unless asked otherwise (no reachable server is assumed); WANDB_MODE wins over the default."""
    return requested or os.environ.get("WANDB_MODE") or "offline"


def _wandb_logger(run_dir: Path, mode: str, repro, preset: str, cfg, group: str | None):
    if mode == "disabled":
        return None
    os.environ["WANDB_MODE"] = mode
    from pytorch_lightning.loggers import WandbLogger

    return WandbLogger(
        project=os.environ.get("WANDB_PROJECT", "attnrepro"),
        name=run_dir.name,
        save_dir=str(run_dir),
        group=group or f"{repro.name}-{preset}",
        tags=[repro.name, repro.role, preset, repro.task],
        config=to_dict(cfg),
        offline=mode == "offline",
    )


def train(
    name: str,
    preset: str = "tiny",
    pair: str | None = None,
    overrides: list[str] | tuple = (),
    seed: int = 1,
    run_dir: Path | str | None = None,
    wandb: str | None = None,
    devices: int | str = "auto",
    evaluate_after: bool = True,
    group: str | None = None,
    nodes: int = 1,
) -> Path:
    repro = registry.get(name)
    cfg = repro.load_config(preset, overrides, pair=pair)
    tag = tasks.get(repro.task).setting(to_dict(cfg)["data"])
    run_dir = Path(run_dir) if run_dir else rundir.default_run_dir(repro.name, preset, tag, seed)
    if rundir.is_rank_zero():
        rundir.check_new_run_dir(run_dir)
    return _fit(repro, cfg, preset, seed, run_dir, wandb, devices, nodes, evaluate_after, group, resume_from=None)


def resume(run_dir: Path | str, wandb: str | None = None, devices: int | str = "auto", nodes: int = 1,
           evaluate_after: bool = True, group: str | None = None) -> Path:
    """Continue an interrupted run from its newest checkpoint, with its own config and seed."""
    run_dir = Path(run_dir)
    facts = rundir.read_run(run_dir)
    repro = registry.get(facts["reproduction"])
    cfg = repro.config_from_dict(facts["config"], str(run_dir / "config.yaml"))
    if rundir.read_metrics(run_dir).get("splits"):
        print(f"{run_dir} is finished (its test splits are scored); nothing to resume")
        return run_dir
    checkpoint = rundir.newest_checkpoint(run_dir)
    return _fit(repro, cfg, facts["preset"], facts["seed"], run_dir, wandb, devices, nodes, evaluate_after, group,
                resume_from=checkpoint)


@dataclass
class Built:
    """A run ready to fit: its data, LightningModule, Trainer and the callbacks whose state is recorded."""

    repro: object
    cfg: object
    preset: str
    seed: int
    run_dir: Path
    data: object
    module: object
    trainer: pl.Trainer
    checkpoints: object  # ModelCheckpoint of best.ckpt
    clock: TrainClock
    wandb_logger: object | None
    wandb: str | None


def _fit(repro, cfg, preset: str, seed: int, run_dir: Path, wandb: str | None, devices, nodes: int,
         evaluate_after: bool, group: str | None, resume_from: Path | None) -> Path:
    if evaluate_after:
        tasks.get(repro.task).check_scoring(cfg)
    curves_before = rundir.curves_until(run_dir, resume_from) if resume_from and rundir.is_rank_zero() else None
    built = build(repro, cfg, preset, seed, run_dir, wandb, devices, nodes, group, resume_from)
    built.trainer.fit(built.module, datamodule=built.data, ckpt_path=str(resume_from) if resume_from else None)
    built.trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    if built.trainer.global_rank != 0:
        return run_dir
    if curves_before is not None:
        rundir.prepend_curves(run_dir, curves_before)
        rundir.note_resume(run_dir, resume_from, built.trainer.global_step)
    scored = record(built)
    if evaluate_after:
        from .evaluate import evaluate
        from .figures import write_run_figures

        evaluate(run_dir, checkpoint=scored, logger=built.wandb_logger)
        write_run_figures(run_dir, scored, logger=built.wandb_logger)
    _finish_wandb(built)
    return run_dir


def build(repro, cfg, preset: str, seed: int, run_dir: Path, wandb: str | None, devices, nodes: int,
          group: str | None, resume_from: Path | None) -> Built:
    """Data, model, callbacks, loggers and Trainer of a run; a new run's directory gets its config and provenance."""
    import torch
    from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
    from pytorch_lightning.loggers import CSVLogger

    pl.seed_everything(seed, workers=True, verbose=False)
    task = tasks.get(repro.task)
    data = task.data_module(cfg, seed, cache_root())
    module = task.lightning_module(repro, cfg, data)
    params = sum(p.numel() for p in module.model.parameters())
    if resume_from is None and rundir.is_rank_zero():
        rundir.start_run(run_dir, to_dict(cfg), seed, data.checksums,
                         extra={"reproduction": repro.name, "preset": preset, "parameters": params,
                                **task.provenance(data, cfg)})
    t = cfg.train
    monitor, mode = getattr(module, "monitor", ("val/loss", "min"))  # captioning: val/bleu4 (Xu et al. §5.2)
    checkpoints = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode=mode,
        save_top_k=1, save_last=True, auto_insert_metric_name=False,
    )
    clock = TrainClock()
    callbacks = [checkpoints, clock, LearningRateMonitor(logging_interval="step"), _resume_checkpoints(run_dir, t)]
    if getattr(t, "compile", False):
        module.model.compile()  # in place: the state_dict keys (checkpoints) stay those of the plain model
    if torch.cuda.is_available():  # the bar reads the logged tensors: on a GPU, only at logging intervals
        callbacks.append(TQDMProgressBar(refresh_rate=t.log_every_n_steps))
    if t.average_last > 0:  # keep the last N periodic checkpoints for averaging (Vaswani et al. §6.1)
        callbacks.append(ModelCheckpoint(
            dirpath=run_dir / "checkpoints" / "periodic", filename="step{step}", monitor="step", mode="max",
            save_top_k=t.average_last, auto_insert_metric_name=False,
            **({"every_n_train_steps": t.checkpoint_every_n_steps} if getattr(t, "checkpoint_every_n_steps", None)
               else {"train_time_interval": dt.timedelta(minutes=t.checkpoint_every_minutes)}),
        ))
    fault = FaultInjection.from_env()
    if fault is not None:
        callbacks.append(fault)
    loggers = [CSVLogger(str(run_dir), name="", version="logs")]
    wandb_logger = _wandb_logger(run_dir, wandb_mode(wandb), repro, preset, cfg, group)
    if wandb_logger is not None:
        loggers.append(wandb_logger)
    trainer = pl.Trainer(
        default_root_dir=str(run_dir),
        max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        max_time=dt.timedelta(minutes=t.max_minutes) if t.max_minutes else None,
        gradient_clip_val=cfg.optim.clip_norm,
        accumulate_grad_batches=t.accumulate_grad_batches,
        precision=resolve_precision(t.precision),
        log_every_n_steps=t.log_every_n_steps,
        check_val_every_n_epoch=None if getattr(t, "val_every_n_batches", None) else t.val_every_n_epochs,
        val_check_interval=getattr(t, "val_every_n_batches", None),
        callbacks=callbacks,
        logger=loggers,
        devices=devices,
        num_nodes=nodes,
        accelerator="auto",
        use_distributed_sampler=False,  # TokenBudgetBatchSampler shards by rank itself
        num_sanity_val_steps=0,
        enable_model_summary=False,
        plugins=[AtomicCheckpointIO()],
    )
    from reproductions.common.data.datamodule import apply_step_budget

    apply_step_budget(trainer, data, t)  # train.tokens_per_step -> accumulation for this number of processes
    return Built(repro, cfg, preset, seed, run_dir, data, module, trainer, checkpoints, clock, wandb_logger, wandb)


def record(built: Built) -> Path:
    """Write the training section of metrics.json; -> the checkpoint to score (best, or the averaged one)."""
    trainer, module, clock, run_dir, t = built.trainer, built.module, built.clock, built.run_dir, built.cfg.train
    scored = Path(built.checkpoints.best_model_path or run_dir / "checkpoints" / "last.ckpt")
    if t.average_last > 0:
        scored = _average_last(run_dir / "checkpoints", t.average_last, trainer.global_step)
    task = tasks.get(built.repro.task)
    batch = {k: v.to(module.device) for k, v in task.sample_batch(built.data).items()}
    flops_per_token = flops_per_target_token(module.model, batch, task.batch_keys)
    accelerator = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
    rundir.update_metrics(run_dir, "training", {
        "wall_time_s": round(clock.fit_seconds, 1),
        "train_time_s": round(clock.train_seconds, 1),
        "steps": trainer.global_step,
        "epochs_completed": trainer.current_epoch,
        "target_tokens": module.tokens_seen,
        "target_tokens_per_s": round(module.tokens_seen / max(clock.train_seconds, 1e-9), 1),
        # the best score of the metric best.ckpt is chosen on (val/loss; captioning: val/bleu4)
        f"best_{built.checkpoints.monitor.replace('/', '_')}": _float(built.checkpoints.best_model_score),
        "scored_checkpoint": scored.name,
        "flops_per_target_token": round(flops_per_token),
        "training_flops": flops_per_token * module.tokens_seen,  # forward + backward, matrix products (FlopCounterMode)
        "devices": trainer.world_size,
        "accelerator": accelerator,
        # GPU-hours (devices x wall time) on accelerators; none on CPU
        "device_hours": round(trainer.world_size * clock.fit_seconds / 3600, 3) if accelerator != "cpu" else None,
        "parameters": sum(p.numel() for p in module.model.parameters()),
        "precision": str(trainer.precision),  # what train.precision (default auto) resolved to here
    })
    if getattr(built.data, "budget", None) is not None:  # planned and measured tokens per optimiser step
        rundir.update_metrics(run_dir, "training", {"batch": {
            **built.data.budget.as_dict(),
            "measured_tgt_tokens_per_step": round(module.tokens_seen / max(trainer.global_step, 1))}})
    return scored


def _finish_wandb(built: Built) -> None:
    if built.wandb_logger is None:
        return
    import wandb as wandb_lib

    mode = wandb_mode(built.wandb)
    if rundir.is_rank_zero():  # where the run lives in W&B, for `attnrepro submit` and reports
        run = built.wandb_logger.experiment
        rundir.update_metrics(built.run_dir, "wandb", {"mode": mode, "project": run.project, "id": run.id,
                                                       "url": run.url if mode == "online" else None})
    wandb_lib.finish()
    if mode == "offline":
        print(f"W&B run saved offline under {built.run_dir / 'wandb'}; upload it with "
              f"`wandb sync {built.run_dir / 'wandb'}/offline-run-*` (needs a W&B account and network)")


def _resume_checkpoints(run_dir: Path, t):
    """checkpoints/resume.ckpt, rewritten every `train.resume_every_n_steps` steps (or minutes)."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    every = ({"every_n_train_steps": t.resume_every_n_steps} if t.resume_every_n_steps
             else {"train_time_interval": dt.timedelta(minutes=t.resume_every_minutes)})
    return ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="resume", save_top_k=1, monitor=None,
                           enable_version_counter=False, save_on_train_epoch_end=True, **every)


def _average_last(checkpoint_dir: Path, n: int, final_step: int) -> Path:
    """The mean of the last n-1 periodic checkpoints and the final weights (last.ckpt)."""
    from reproductions.common.averaging import average_checkpoints

    periodic = sorted((checkpoint_dir / "periodic").glob("step*.ckpt"), key=lambda p: int(p.stem[4:]))
    periodic = [p for p in periodic if int(p.stem[4:]) != final_step]  # that one is last.ckpt already
    paths = periodic[-(n - 1):] if n > 1 else []
    return average_checkpoints(paths + [checkpoint_dir / "last.ckpt"], checkpoint_dir / "averaged.ckpt")


def _float(value) -> float | None:
    return None if value is None else round(float(value), 4)


class TrainClock(pl.Callback):
    """Seconds spent in training batches (throughput) and in the whole fit (wall time), summed over the
    attempts of a resumed run (the state travels in the checkpoint)."""

    def __init__(self):
        self.train_seconds = 0.0
        self.fit_seconds = 0.0
        self._before = 0.0  # fit seconds of earlier attempts
        self._batch_start = self._fit_start = 0.0

    def on_fit_start(self, trainer, pl_module):
        self._fit_start = time.perf_counter()

    def on_fit_end(self, trainer, pl_module):
        self.fit_seconds = self._before + time.perf_counter() - self._fit_start

    def state_dict(self) -> dict:
        elapsed = time.perf_counter() - self._fit_start
        return {"train_seconds": self.train_seconds, "fit_seconds": self._before + elapsed}

    def load_state_dict(self, state: dict) -> None:
        self.train_seconds, self._before = state["train_seconds"], state["fit_seconds"]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.train_seconds += time.perf_counter() - self._batch_start
        minutes = (self._before + time.perf_counter() - self._fit_start) / 60
        pl_module.log("time/minutes", minutes, batch_size=1)  # learning curves over wall-clock time


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints are written to a temporary file and renamed: a kill during the write leaves the previous
    checkpoint intact, never half a file."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


class FaultInjection(pl.Callback):
    """Testing aid: ATTNREPRO_INJECT_FAULT=kill@N (SIGKILL itself) or raise@N (an exception) after the N-th
    optimiser step, to exercise resumption and a sweep's retries as a real crash would."""

    def __init__(self, kind: str, step: int):
        self.kind, self.step = kind, step

    @classmethod
    def from_env(cls) -> FaultInjection | None:
        value = os.environ.get("ATTNREPRO_INJECT_FAULT")
        if not value:
            return None
        kind, _, step = value.partition("@")
        if kind not in ("kill", "raise") or not step.isdigit():
            raise AttnreproError(f"ATTNREPRO_INJECT_FAULT={value!r}: expected kill@STEP or raise@STEP")
        return cls(kind, int(step))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            if self.kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"fault injected by ATTNREPRO_INJECT_FAULT at step {self.step}")
