"""`attnrepro train`: fit a reproduction under Lightning, then score the test splits that are present."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytorch_lightning as pl
from pytorch_lightning.plugins.io import TorchCheckpointIO

from reproductions.common import rundir
from reproductions.common.config import to_dict
from reproductions.common.data.sources import cache_root
from reproductions.common.errors import AttnreproError
from reproductions.common.flops import flops_per_target_token
from reproductions.common.io import atomic_path
from reproductions.common.precision import resolve_precision

from .progress_bar import BudgetProgress
from .runspec import RunSpec

if TYPE_CHECKING:
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import Logger


def wandb_mode(requested: str | None) -> str:
    """offline unless asked otherwise (no reachable server is assumed); WANDB_MODE wins over the default."""
    return requested or os.environ.get("WANDB_MODE") or "offline"


def _wandb_logger(run_dir: Path, mode: str, repro, preset: str, cfg, group: str | None):
    if mode == "disabled":
        return None
    os.environ["WANDB_MODE"] = mode
    from pytorch_lightning.loggers import WandbLogger

    logger = WandbLogger(
        project=os.environ.get("WANDB_PROJECT", "attnrepro"),
        name=run_dir.name,
        save_dir=str(run_dir),
        group=group or f"{repro.name}-{preset}",
        tags=[repro.name, repro.role, preset, repro.task],
        config=to_dict(cfg),
        offline=mode == "offline",
    )
    logger._wandb_init.pop("anonymous", None)  # Lightning always passes it; wandb >= 0.23 then warns about it
    return logger


@dataclass(frozen=True)
class Launch:
    """How a run is carried out, beside what it is (its RunSpec): W&B, scoring afterwards, the W&B group."""

    wandb: str | None = None  # online, offline, disabled; None: WANDB_MODE, else offline
    evaluate_after: bool = True  # score the test splits and draw the figures once training ends
    group: str | None = None  # the W&B group (a sweep's name)


def train(name: str, preset: str = "tiny", pair: str | None = None, overrides: list[str] | tuple = (), seed: int = 1,
          run_dir: Path | str | None = None, wandb: str | None = None, devices: int | str = "auto",
          evaluate_after: bool = True, group: str | None = None, nodes: int = 1) -> Path:
    """Train a new run of registry entry `name` (the Python door of `attnrepro train`); -> its run directory."""
    spec = RunSpec.new(name, preset, seed, pair, overrides, run_dir, devices, nodes)
    return train_spec(spec, Launch(wandb, evaluate_after, group))


def train_spec(spec: RunSpec, launch: Launch = Launch()) -> Path:
    """Train the new run `spec` (its config already resolved); -> its run directory."""
    with _writer_lock(spec.run_dir):
        if rundir.is_rank_zero():
            rundir.check_new_run_dir(spec.run_dir)
        return _fit(spec, launch, resume_from=None)


def resume(run_dir: Path | str, wandb: str | None = None, devices: int | str = "auto", nodes: int = 1,
           evaluate_after: bool = True, group: str | None = None) -> Path:
    """Continue an interrupted run from its newest usable checkpoint, with its own config and seed; a run that
    died before its first checkpoint starts again from step 0, and one killed after its scores gets its figures."""
    run = rundir.RunDir(run_dir)
    spec = RunSpec.of_run(run, devices, nodes)
    launch = Launch(wandb, evaluate_after, group)
    with _writer_lock(run.path):
        if rundir.is_rank_zero():
            rundir.remove_stale_temporaries(run.path)
        metrics = run.metrics()
        if metrics.get("splits"):
            if not metrics.get("status", {}).get("finished") and evaluate_after and rundir.is_rank_zero():
                _finish_figures(run.path, metrics)
            print(f"{run.path} is finished (its test splits are scored); nothing to resume")
            return run.path
        if not rundir.resume_candidates(run.path):
            print(f"{run.path} died before its first checkpoint: starting it again from step 0")
            if rundir.is_rank_zero():
                _clear_attempt(run.path)
            return _fit(spec, launch, resume_from=None)
        checkpoint = rundir.newest_checkpoint(run.path)
        _check_fits(spec, checkpoint)
        return _fit(spec, launch, resume_from=checkpoint)


def _check_fits(spec: RunSpec, checkpoint: Path) -> None:
    """The checkpoint's stored config must be the run's config.yaml: an edited config.yaml would build another
    model (and another data order) than the one the checkpoint continues."""
    import torch

    stored = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True).get("attnrepro", {})
    if "config" not in stored:
        return
    theirs = to_dict(spec.repro.config_from_dict(stored["config"], f"{checkpoint} (stored config)"))
    mine = to_dict(spec.cfg)
    differ = [f"{section}.{k}" for section in mine for k in mine[section]  # decoding may change: it trains nothing
              if section != "decode" and isinstance(mine[section], dict)
              and mine[section][k] != theirs.get(section, {}).get(k)]
    if differ:
        raise AttnreproError(f"{checkpoint} does not fit the run's config.yaml ({differ[0]} differs; was it edited?): "
                             "restore the config the run was started with, or start a new run")


def _writer_lock(run_dir: Path):
    """The run directory's lock in the process that writes it (rank 0); the other DDP ranks take none."""
    import contextlib

    return rundir.RunLock(run_dir) if rundir.is_rank_zero() else contextlib.nullcontext()


def _clear_attempt(run_dir: Path) -> None:
    """What an attempt that never reached a checkpoint left: its logs and figures (its config stays)."""
    import shutil

    for name in ("logs", "figures", "hyps", "checkpoints", "progress.json", "metrics.json"):
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _finish_figures(run_dir: Path, metrics: dict) -> None:
    """A run killed after its scores were written but before its figures: draw them now."""
    from .figures import write_run_figures

    scored = metrics.get("training", {}).get("scored_checkpoint") or "last.ckpt"
    print(f"{run_dir}: its scores are written but not all its figures; drawing them")
    write_run_figures(run_dir, run_dir / "checkpoints" / scored)
    rundir.update_metrics(run_dir, "status", {"finished": True})


@dataclass
class Built:
    """A run ready to fit: its spec, data, LightningModule, Trainer and the callbacks whose state is recorded."""

    spec: RunSpec
    launch: Launch
    data: pl.LightningDataModule
    module: pl.LightningModule
    trainer: pl.Trainer
    checkpoints: ModelCheckpoint  # best.ckpt (and last.ckpt)
    clock: TrainClock
    wandb_logger: Logger | None
    budget: object | None  # the tokens per optimiser step planned (translation: StepBudget), None where not planned

    @property
    def run_dir(self) -> Path:
        return self.spec.run_dir


def _fit(spec: RunSpec, launch: Launch, resume_from: Path | None) -> Path:
    run_dir = spec.run_dir
    if launch.evaluate_after:
        spec.task.check_scoring(spec.cfg)
    curves_before = rundir.curves_until(run_dir, resume_from) if resume_from and rundir.is_rank_zero() else None
    built = build(spec, launch, resume_from)
    try:
        built.trainer.fit(built.module, datamodule=built.data, ckpt_path=str(resume_from) if resume_from else None)
    except RuntimeError as err:
        if resume_from is not None and "state_dict" in str(err):
            raise AttnreproError(f"{resume_from} does not fit the run's config.yaml (was it edited?): restore the "
                                 "config the run was started with, or start a new run") from None
        raise
    built.trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    if built.trainer.global_rank != 0:
        return run_dir
    if curves_before is not None:
        rundir.prepend_curves(run_dir, curves_before)
        rundir.note_resume(run_dir, resume_from, built.trainer.global_step)
    scored = record(built)
    if launch.evaluate_after:
        from .evaluate import evaluate
        from .figures import write_run_figures

        evaluate(run_dir, checkpoint=scored, logger=built.wandb_logger)
        write_run_figures(run_dir, scored, logger=built.wandb_logger)
        rundir.update_metrics(run_dir, "status", {"finished": True})
    _finish_wandb(built)
    return run_dir


def build(spec: RunSpec, launch: Launch, resume_from: Path | None) -> Built:
    """Data, model, callbacks, loggers and Trainer of a run; a new run's directory gets its config and provenance."""
    from pytorch_lightning.loggers import CSVLogger

    repro, cfg, run_dir, task = spec.repro, spec.cfg, spec.run_dir, spec.task
    pl.seed_everything(spec.seed, workers=True, verbose=False)
    data = task.data_module(cfg, spec.seed, cache_root())
    module = task.lightning_module(repro, cfg, data)
    params = sum(p.numel() for p in module.model.parameters())
    if resume_from is None and rundir.is_rank_zero():
        rundir.start_run(run_dir, to_dict(cfg), spec.seed, data.checksums,
                         extra={"reproduction": repro.name, "preset": spec.preset, "parameters": params,
                                **task.provenance(data, cfg)})
    module.run_id = rundir.run_id(run_dir) if rundir.is_rank_zero() else None
    if getattr(cfg.train, "compile", False):  # a Transformer option
        module.model.compile()  # in place: the state_dict keys (checkpoints) stay those of the plain model
    callbacks, checkpoints, clock = _callbacks(run_dir, cfg.train, module.monitor,
                                               f"{repro.name} {spec.preset} s{spec.seed}")
    loggers = [CSVLogger(str(run_dir), name="", version="logs")]
    wandb_logger = _wandb_logger(run_dir, wandb_mode(launch.wandb), repro, spec.preset, cfg, launch.group)
    if wandb_logger is not None:
        loggers.append(wandb_logger)
    trainer = _trainer(cfg, run_dir, callbacks, loggers, spec.devices, spec.nodes)
    budget = task.step_budget(trainer, data, cfg.train)  # tokens per step -> accumulation for this number of processes
    return Built(spec, launch, data, module, trainer, checkpoints, clock, wandb_logger, budget)


def _callbacks(run_dir: Path, t, monitor: tuple[str, str], label: str) -> tuple[list, object, TrainClock]:
    """The run's callbacks; -> (all of them, the best/last ModelCheckpoint, the TrainClock)."""
    from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint

    name, mode = monitor  # captioning: val/bleu4 (Xu et al. §5.2)
    checkpoints = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="best", monitor=name, mode=mode,
        save_top_k=1, save_last=True, auto_insert_metric_name=False,
    )
    clock = TrainClock()
    callbacks = [checkpoints, clock, LearningRateMonitor(logging_interval="step"), _resume_checkpoints(run_dir, t),
                 BudgetProgress(run_dir, label), FiniteGuard(t.log_every_n_steps)]
    if t.average_last > 0:  # keep the last N periodic checkpoints for averaging (Vaswani et al. §6.1)
        callbacks.append(ModelCheckpoint(  # weights only: an average needs no optimiser state (Adam's doubles them)
            dirpath=run_dir / "checkpoints" / "periodic", filename="step{step}", monitor="step", mode="max",
            save_top_k=t.average_last, auto_insert_metric_name=False, enable_version_counter=False,
            save_weights_only=True,
            **_every(t.checkpoint_every_n_steps, t.checkpoint_every_minutes)))
    fault = FaultInjection.from_env()
    if fault is not None:
        callbacks.append(fault)
    return callbacks, checkpoints, clock


def _trainer(cfg, run_dir: Path, callbacks: list, loggers: list, devices, nodes: int) -> pl.Trainer:
    t = cfg.train
    val_every_n_batches = getattr(t, "val_every_n_batches", None)  # validation by steps instead of epochs
    return pl.Trainer(
        default_root_dir=str(run_dir),
        max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        max_time=dt.timedelta(minutes=t.max_minutes) if t.max_minutes else None,
        gradient_clip_val=cfg.optim.clip_norm,
        accumulate_grad_batches=t.accumulate_grad_batches,
        precision=resolve_precision(t.precision),
        log_every_n_steps=t.log_every_n_steps,
        check_val_every_n_epoch=None if val_every_n_batches else t.val_every_n_epochs,
        val_check_interval=val_every_n_batches,
        callbacks=callbacks,
        logger=loggers,
        devices=devices,
        num_nodes=nodes,
        accelerator="auto",
        use_distributed_sampler=False,  # TokenBudgetBatchSampler shards by rank itself
        num_sanity_val_steps=0,
        enable_model_summary=False,
        enable_progress_bar=False,  # BudgetProgress shows the steps of the budget instead of those of an epoch
        plugins=[AtomicCheckpointIO()],
    )


def record(built: Built) -> Path:
    """Write the training section of metrics.json; -> the checkpoint to score (best, or the averaged one)."""
    import torch

    trainer, module, clock, run_dir, t = built.trainer, built.module, built.clock, built.run_dir, built.spec.cfg.train
    scored = Path(built.checkpoints.best_model_path or run_dir / "checkpoints" / "last.ckpt")
    if t.average_last > 0:
        scored = _average_last(run_dir / "checkpoints", t.average_last, trainer.global_step)
    task = built.spec.task
    batch = {k: v.to(module.device) for k, v in task.sample_batch(built.data).items()}
    flops_per_token = flops_per_target_token(module.model, batch, task.batch_keys)
    accelerator = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
    rundir.update_metrics(run_dir, "training", {
        "wall_time_s": round(clock.fit_seconds, 1),
        "train_time_s": round(clock.train_seconds, 1),
        "steps": trainer.global_step,
        "epochs_completed": trainer.current_epoch,
        # the budget in work (steps, else epochs) and what ended the run: "time" marks a run cut by the opt-in
        # train.max_minutes, whose numbers depend on the machine's speed (reports flag it)
        "budget": {"max_steps": t.max_steps if t.max_steps > 0 else None, "max_epochs": t.max_epochs,
                   "max_minutes": t.max_minutes or None},
        "stopped_by": stopped_by(trainer),
        "train_loss": loss_trend(run_dir),
        "torch_threads": torch.get_num_threads(),
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
    if built.budget is not None:  # planned and measured tokens per optimiser step
        rundir.update_metrics(run_dir, "training", {"batch": {
            **built.budget.as_dict(),
            "measured_tgt_tokens_per_step": round(module.tokens_seen / max(trainer.global_step, 1))}})
    return scored


def _finish_wandb(built: Built) -> None:
    if built.wandb_logger is None:
        return
    import wandb as wandb_lib

    mode = wandb_mode(built.launch.wandb)
    if rundir.is_rank_zero():  # where the run lives in W&B, for `attnrepro submit` and reports
        run = built.wandb_logger.experiment
        rundir.update_metrics(built.run_dir, "wandb", {"mode": mode, "project": run.project, "id": run.id,
                                                       "url": run.url if mode == "online" else None})
    wandb_lib.finish()
    if mode == "offline":
        print(f"W&B run saved offline under {built.run_dir / 'wandb'}; upload it with "
              f"`wandb sync {built.run_dir / 'wandb'}/offline-run-*` (needs a W&B account and network)")


def _every(steps: int | None, minutes: float | None) -> dict:
    """ModelCheckpoint's period: every `steps` optimiser steps, else every `minutes` (opt-in)."""
    if steps:
        return {"every_n_train_steps": steps}
    return {"train_time_interval": dt.timedelta(minutes=minutes)}


def _resume_checkpoints(run_dir: Path, t):
    """checkpoints/resume.ckpt, rewritten every `train.resume_every_n_steps` steps (or minutes)."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    return ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="resume", save_top_k=1, monitor=None,
                           enable_version_counter=False, save_on_train_epoch_end=True,
                           **_every(t.resume_every_n_steps, t.resume_every_minutes))


def stopped_by(trainer: pl.Trainer) -> str:
    """What ended the fit: "steps" (max_steps), "epochs" (max_epochs), "time" (the opt-in train.max_minutes),
    "early_stopping", or "interrupted" (anything else, e.g. Ctrl-C)."""
    from pytorch_lightning.callbacks import EarlyStopping, Timer

    for timer in (c for c in trainer.callbacks if isinstance(c, Timer)):
        remaining = timer.time_remaining("train")
        if remaining is not None and remaining <= 0:
            return "time"
    if trainer.max_steps and trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
        return "steps"
    if trainer.max_epochs and trainer.max_epochs > 0 and trainer.current_epoch >= trainer.max_epochs:
        return "epochs"
    if any(isinstance(c, EarlyStopping) and c.stopped_epoch > 0 for c in trainer.callbacks):
        return "early_stopping"
    return "interrupted"


def loss_trend(run_dir: Path) -> dict | None:
    """Mean training loss over the first and the last tenth of the logged steps (logs/metrics.csv)."""
    from .figures import read_curves

    losses = [float(r["train/loss"]) for r in read_curves(run_dir) if r.get("train/loss")]
    if len(losses) < 4:
        return None
    tenth = max(1, len(losses) // 10)
    return {"first": round(sum(losses[:tenth]) / tenth, 4), "last": round(sum(losses[-tenth:]) / tenth, 4),
            "logged": len(losses)}


def _average_last(checkpoint_dir: Path, n: int, final_step: int) -> Path:
    """The mean of the last n-1 periodic checkpoints and the final weights (last.ckpt)."""
    from reproductions.common.averaging import average_checkpoints

    periodic = sorted((p for p in (checkpoint_dir / "periodic").glob("step*.ckpt") if _step_of(p) is not None),
                      key=_step_of)
    periodic = [p for p in periodic if _step_of(p) != final_step]  # that one is last.ckpt already
    paths = periodic[-(n - 1):] if n > 1 else []
    return average_checkpoints(paths + [checkpoint_dir / "last.ckpt"], checkpoint_dir / "averaged.ckpt")


def _step_of(path: Path) -> int | None:
    """stepN.ckpt -> N; None for any other name (a stray copy such as stepN-v1.ckpt is not averaged)."""
    digits = path.stem[4:]
    return int(digits) if digits.isdigit() else None


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


class FiniteGuard(pl.Callback):
    """Stops a run whose training loss or weights stop being finite, with the step, instead of training on to
    NaN weights and a score of 0. Losses are checked on the device and read every `every` steps (a read makes
    the host wait for a GPU); the weights are checked when training starts (a resumed checkpoint) and at the end."""

    def __init__(self, every: int):
        self.every = max(1, every)
        self._bad = None

    def _check_weights(self, pl_module, when: str, step: int) -> None:
        import torch

        bad = next((n for n, p in pl_module.named_parameters() if not torch.isfinite(p).all()), None)
        if bad:
            raise AttnreproError(f"the weights are not finite {when} (step {step}, parameter {bad}); "
                                 "resume from an earlier checkpoint or start a new run")

    def on_train_start(self, trainer, pl_module):
        self._check_weights(pl_module, "at the start of training", trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        import torch

        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        finite = torch.isfinite(loss.detach())
        self._bad = ~finite if self._bad is None else self._bad | ~finite
        if trainer.global_step % self.every == 0:
            self._check_losses(trainer.global_step)

    def _check_losses(self, step: int) -> None:
        if self._bad is not None and bool(self._bad):
            raise AttnreproError(f"the training loss became NaN or infinite by step {step}; the "
                                 "run stops here (try a lower optim.lr, or check the data)")

    def on_train_end(self, trainer, pl_module):
        self._check_losses(trainer.global_step)  # the last steps since the last read
        self._check_weights(pl_module, "at the end of training", trainer.global_step)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints are written to a temporary file and renamed: a kill during the write leaves the previous
    checkpoint intact, never half a file. Each gets a CKPT.sha256 beside it, so that damage that still loads (a
    few flipped bytes) is found before a resume trains on it (rundir.checkpoint_problem)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            digest = rundir.file_sha256(tmp)
        rundir.write_checksum(Path(path), digest)

    def remove_checkpoint(self, path) -> None:
        super().remove_checkpoint(path)
        rundir.checksum_path(Path(path)).unlink(missing_ok=True)


class FaultInjection(pl.Callback):
    """Testing aid: ATTNREPRO_INJECT_FAULT=kill@N (SIGKILL itself), raise@N (an exception) or nan@N (a weight set
    to NaN) after the N-th optimiser step, to exercise resumption, a sweep's retries and the finite-loss guard as a
    real crash or a diverging run would."""

    def __init__(self, kind: str, step: int):
        self.kind, self.step = kind, step

    @classmethod
    def from_env(cls) -> FaultInjection | None:
        value = os.environ.get("ATTNREPRO_INJECT_FAULT")
        if not value:
            return None
        kind, _, step = value.partition("@")
        if kind not in ("kill", "raise", "nan") or not step.isdigit():
            raise AttnreproError(f"ATTNREPRO_INJECT_FAULT={value!r}: expected kill@STEP, raise@STEP or nan@STEP")
        return cls(kind, int(step))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            if self.kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if self.kind == "nan":
                import torch

                with torch.no_grad():
                    next(pl_module.parameters()).fill_(float("nan"))
                return
            raise RuntimeError(f"fault injected by ATTNREPRO_INJECT_FAULT at step {self.step}")
