"""`attnrepro evaluate`: decode any split with a trained model and score it with its task's metrics
(sacreBLEU for translation, pycocoevalcap for captions)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from reproductions import tasks
from reproductions.common import rundir
from reproductions.common.checkpoint import CheckpointError

from .tables import Col, print_table


def check_command(loaded, ckpt: Path, command: str) -> None:
    """A model decodes through its own task's command (`translate` or `caption`); else one line naming it."""
    from reproductions.common.errors import AttnreproError

    own = tasks.get(loaded.task).command
    if own != command:
        raise AttnreproError(f"{ckpt} is a {loaded.task} model ({loaded.reproduction}); use `attnrepro {own}`")


def locate(target: Path | str) -> tuple[Path | None, Path]:
    """RUN_DIR or checkpoint file -> (run dir or None, checkpoint). A run dir's checkpoint is the one its training
    scored (metrics.json `training.scored_checkpoint`: averaged.ckpt with `train.average_last`), else best.ckpt,
    else last.ckpt, so that evaluating, translating or captioning with a run uses the weights its scores are of."""
    target = Path(target)
    if target.is_dir():
        return target, rundir.RunDir(target).scored_checkpoint()
    if not target.exists():
        raise CheckpointError(f"{target} does not exist; give a run directory or a .ckpt file")
    run_dir = target.parent.parent if rundir.RunDir(target.parent.parent).started else None
    return run_dir, target


def evaluate(
    target: Path | str,
    splits: list[str] | None = None,
    beam: int | None = None,
    checkpoint: Path | None = None,
    device: str | None = None,
    logger=None,
    console: Console | None = None,
    decode_overrides: list[str] | tuple = (),
    allow_other_run: bool = False,
) -> dict:
    """Scores of `splits` (default: the test splits present) with the run's decoding settings, written into the
    run's metrics.json (and hyps/). Another decoding setting, by `beam` (--beam) or `decode_overrides`
    (--set decode.KEY=VALUE; the two are one door), is written beside the run's record, in
    RUN_DIR/evaluations/SETTING/ (its metrics.json and hyps/), so that the run's own scores stay those of its
    config: e.g. a length penalty chosen on the validation split."""
    import torch

    from reproductions.common.config import to_dict
    from reproductions.loading import load_model

    run_dir, ckpt = locate(target) if checkpoint is None else (Path(target), checkpoint)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    loaded = load_model(ckpt, device)
    if run_dir is not None and not allow_other_run:
        check_same_run(run_dir, loaded)
    task = tasks.get(loaded.task)
    overrides = [*beam_override(beam), *decode_overrides]
    own = to_dict(loaded.cfg.decode)
    loaded.cfg = with_decode_overrides(loaded, overrides)
    setting = decode_setting(own, to_dict(loaded.cfg.decode))
    out_dir = run_dir if run_dir is None or not setting else run_dir / "evaluations" / setting
    results, skipped = task.evaluate(loaded, out_dir, splits, device, logger=logger if out_dir == run_dir else None)
    if out_dir is not None:
        rundir.update_metrics(out_dir, "splits", results)
        if skipped:
            rundir.update_metrics(out_dir, "skipped_splits", skipped)
        if setting:
            rundir.update_metrics(out_dir, "decode", to_dict(loaded.cfg.decode))
    console = console or Console()
    print_scores(task, results, skipped, loaded.reproduction, console)
    if out_dir is not None and setting:
        console.print(f"{setting}: scores and hypotheses in {out_dir} (the run's own scores, of its config, are "
                      "unchanged)", highlight=False, soft_wrap=True)
    return results


def beam_override(beam: int | None) -> list[str]:
    """--beam N is --set decode.beam=N."""
    return [f"decode.beam={beam}"] if beam else []


def decode_setting(own: dict, used: dict) -> str:
    """The decoding keys that differ from the run's config as one folder name, `decode.beam=1,decode.length_
    penalty=2.0` (sorted); "" when they are the run's own."""
    return ",".join(f"decode.{key}={used[key]}" for key in sorted(used) if used[key] != own.get(key))


def check_same_run(run_dir: Path, loaded) -> None:
    """Scores are written into a run's metrics.json only from that run's own checkpoints: the run id stored in the
    checkpoint (else, for older checkpoints, the reproduction and config) must be the run directory's."""
    from reproductions import registry
    from reproductions.common.config import to_dict

    run = rundir.RunDir(run_dir)
    mine = run.provenance.get("run_id")
    if loaded.run_id and mine:
        same = loaded.run_id == mine
    else:
        config = registry.get(run.reproduction).config_from_dict(run.config, str(run.path / "config.yaml"))
        same = loaded.reproduction == run.reproduction and to_dict(loaded.cfg) == to_dict(config)
    if not same:
        raise CheckpointError(f"{loaded.path} is not a checkpoint of the run {run_dir} (another run wrote it); "
                              "its scores would overwrite the run's. Evaluate it from its own run directory, or "
                              "pass --allow-other-run to score it into this one anyway")


def with_decode_overrides(loaded, overrides) -> object:
    """The loaded run's config with `decode.KEY=VALUE` overrides applied, checked as `--set` is at training."""
    from reproductions.common.config import ConfigError, parse_override, with_overrides

    for text in overrides:
        if not parse_override(text)[0].startswith("decode."):
            raise ConfigError(f"--set {text}: evaluate changes decoding settings only (decode.KEY=VALUE); "
                              "the model's other settings are fixed by its checkpoint")
    return with_overrides(loaded.cfg, overrides)


def print_scores(task, results: dict, skipped: dict, name: str, console: Console) -> None:
    """One row per split with the task's metric columns; in a narrow terminal the columns other than the
    headline metric are dropped rather than cut."""
    columns = [Col("split"), Col(task.segment, "number", optional=True)]
    columns += [Col(c.label, "number", optional=c.key != task.headline) for c in task.columns]
    columns.append(Col("beam", "number", optional=True))
    rows = [[split, str(s[task.segment]), *(f"{s[c.key]:.2f}" for c in task.columns), str(s["beam"])]
            for split, s in results.items()]
    print_table(console, f"{name}: {task.metric_title}", columns, rows)
    if results:
        first = next(iter(results.values()))
        for key in ("bleu_signature", "spice_unavailable"):
            if key in first:
                console.print(f"[dim]{key.replace('_', ' ')}: {first[key]}[/dim]")
    for split, why in skipped.items():
        console.print(f"[dim]skipped {split}: {why}[/dim]")
