"""`attnrepro evaluate`: decode any split with a trained model and score it (sacreBLEU; captions: pycocoevalcap)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.console import Console
from rich.table import Table

from reproductions.common.checkpoint import CheckpointError, load_model
from reproductions.common.data.translation import checksums, load_split, split_available
from reproductions.common.decoding import translate_texts
from reproductions.common.io import atomic_write_text
from reproductions.common.metrics import bleu_by_length, corpus_scores

from . import rundir


def locate(target: Path | str) -> tuple[Path | None, Path]:
    """RUN_DIR or checkpoint file -> (run dir or None, checkpoint). A run dir's best checkpoint is preferred."""
    target = Path(target)
    if target.is_dir():
        ckpts = target / "checkpoints"
        for name in ("best.ckpt", "last.ckpt"):
            if (ckpts / name).is_file():
                return target, ckpts / name
        raise CheckpointError(
            f"{target} holds no checkpoints/best.ckpt or checkpoints/last.ckpt; is it a run directory?"
        )
    if not target.exists():
        raise CheckpointError(f"{target} does not exist; give a run directory or a .ckpt file")
    run_dir = target.parent.parent if (target.parent.parent / "config.yaml").exists() else None
    return run_dir, target


def evaluate(
    target: Path | str,
    splits: list[str] | None = None,
    beam: int | None = None,
    checkpoint: Path | None = None,
    device: str | None = None,
    logger=None,
    console: Console | None = None,
) -> dict:
    import torch

    run_dir, ckpt = locate(target) if checkpoint is None else (Path(target), checkpoint)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    loaded = load_model(ckpt, device)
    if loaded.task == "captioning":
        from .caption import evaluate_captions

        return evaluate_captions(loaded, run_dir, splits, beam, device, logger=logger, console=console)
    cfg = loaded.cfg
    decode = dataclasses.replace(cfg.decode, beam=beam) if beam else cfg.decode
    data = cfg.data
    if splits:
        wanted, skipped = list(splits), {}
    else:  # the configured test splits that this machine has
        wanted = [s for s in data.test_splits if split_available(data.dataset, data.pair, s)]
        skipped = {s: "not under the data root" for s in data.test_splits if s not in wanted}
    results = {}
    for split in wanted:
        pairs = load_split(data.dataset, data.pair, split, data.eval_limit)
        srcs, refs = list(pairs["src"]), list(pairs["tgt"])
        hyps, _ = translate_texts(loaded.model, loaded.src_vocab, loaded.tgt_vocab, srcs, decode, device,
                                  desc=f"{split} (beam {decode.beam})")
        scores = corpus_scores(hyps, refs)
        scores.update({
            "beam": decode.beam,
            "length_penalty": decode.length_penalty,
            "checkpoint": ckpt.name,
            "bleu_by_length": bleu_by_length(srcs, hyps, refs, decode.length_buckets),
            "data_checksums": checksums(data.dataset, data.pair, [split]),
        })
        results[split] = scores
        if run_dir is not None:
            atomic_write_text(run_dir / "hyps" / f"{split}.txt", "\n".join(hyps) + "\n")
        if logger is not None:
            logger.log_metrics({f"test/{split}/bleu": scores["bleu"], f"test/{split}/chrf": scores["chrf"]})
    if run_dir is not None:
        rundir.update_metrics(run_dir, "splits", results)
        if skipped:
            rundir.update_metrics(run_dir, "skipped_splits", skipped)
    _print(results, skipped, loaded.reproduction, console or Console())
    return results


def _print(results: dict, skipped: dict, name: str, console: Console) -> None:
    table = Table(title=f"{name}: sacreBLEU")
    for column in ("split", "sentences", "BLEU", "chrF", "beam"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for split, s in results.items():
        table.add_row(split, str(s["sentences"]), f"{s['bleu']:.2f}", f"{s['chrf']:.2f}", str(s["beam"]))
    console.print(table)
    if results:
        console.print(f"signature: {next(iter(results.values()))['bleu_signature']}")
    for split, why in skipped.items():
        console.print(f"[dim]skipped {split}: {why}[/dim]")
