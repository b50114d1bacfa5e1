"""Decode the runs of an earlier benchmark record again, with other decoding settings, and score them.

Training is where the time goes; a change of decoding (beam, length penalty, `decode.min_len`) needs only the
trained checkpoints. This script reads a record of `benchmarks/multi30k.py` or `benchmarks/flickr8k.py`, decodes
each run's scored checkpoint (the one its record was scored with: the averaged or best one) on the chosen splits
with the record's own settings changed by `--set decode.KEY=VALUE`, and writes a new record beside the old scores:

    python benchmarks/redecode.py benchmarks/results/flickr8k-cpu-20261126-2cores --split dev \\
        --set decode.beam=5 --set decode.length_penalty=2.0 --out benchmarks/results/NAME

Without `--set` it decodes with the runs' own settings, which reproduces their recorded scores. The runs'
checkpoints live under RECORD/runs/, which is not committed: only the machine that ran the benchmark has them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console

from harness.benchmark import provenance
from harness.tables import Col, print_table
from reproductions.common.errors import AttnreproError
from reproductions.common.io import atomic_write_json

# the columns printed, where a split's scores have them (the JSON keeps every score)
SHOWN = ("bleu", "tok_bleu", "chrf", "bleu4", "bleu4_nobp", "meteor", "rouge_l", "cider_d")


class RecordError(AttnreproError):
    pass


def read_record(record: Path) -> dict:
    path = record / "result.json"
    if not path.is_file():
        raise RecordError(f"{path} does not exist: give the folder of a benchmark record "
                          "(benchmarks/results/NAME, written by benchmarks/multi30k.py or flickr8k.py)")
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RecordError(f"{path} is not valid JSON ({err}); it is not a benchmark record") from err
    if not isinstance(result.get("runs"), dict) or not result["runs"]:
        raise RecordError(f"{path} has no 'runs': it is not a record of trained models")
    return result


def scored_checkpoint(record: Path, name: str, run: dict) -> Path:
    """The checkpoint the record's scores came from, under RECORD/runs/NAME (wherever the record was moved)."""
    ckpt_name = run.get("training", {}).get("scored_checkpoint", "best.ckpt")
    path = record / "runs" / name / "checkpoints" / ckpt_name
    if not path.is_file():
        raise RecordError(f"{path} does not exist: the record's runs/ folder (its checkpoints) is not committed and "
                          "lives only where the benchmark ran; rerun the benchmark with --out there to get one")
    return path


def redecode(record: Path, splits: list[str] | None, overrides: list[str], models: list[str] | None,
             console: Console) -> dict:
    """name -> {checkpoint, trained_at, recorded: the record's scores of those splits, scores: the new ones,
    skipped: splits not present}. Nothing under the record is written."""
    import torch

    from harness.evaluate import with_decode_overrides
    from reproductions import tasks
    from reproductions.loading import load_model

    result = read_record(record)
    names = models or list(result["runs"])
    unknown = [n for n in names if n not in result["runs"]]
    if unknown:
        raise RecordError(f"--models {' '.join(unknown)}: not in {record / 'result.json'} "
                          f"(it has {', '.join(result['runs'])})")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    runs = {}
    for name in names:
        run = result["runs"][name]
        ckpt = scored_checkpoint(record, name, run)
        console.rule(f"{name}: {ckpt}")
        loaded = load_model(ckpt, device)
        if overrides:
            loaded.cfg = with_decode_overrides(loaded, overrides)
        scores, skipped = tasks.get(loaded.task).evaluate(loaded, None, splits, device)
        runs[name] = {"checkpoint": str(ckpt), "trained_at": run.get("git"),
                      "recorded": {s: run.get("splits", {}).get(s) for s in scores}, "scores": scores,
                      "skipped": skipped}
    return runs


def print_summary(console: Console, runs: dict) -> None:
    shown = [k for k in SHOWN if any(k in new for run in runs.values() for new in run["scores"].values())]
    columns = [Col("model"), Col("split"), *(Col(key, "number") for key in shown)]
    rows = []
    for name, run in runs.items():
        for split, new in run["scores"].items():
            old = run["recorded"].get(split) or {}
            cells = []
            for key in shown:
                if key not in new or new[key] is None:
                    cells.append("")
                elif key in old and old[key] is not None:
                    cells.append(f"{old[key]:.2f} -> {new[key]:.2f}")
                else:
                    cells.append(f"{new[key]:.2f}")
            rows.append([name, split, *cells])
    print_table(console, "recorded -> decoded again", columns, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("record", type=Path, help="a benchmark record folder (benchmarks/results/NAME)")
    parser.add_argument("--split", action="append", dest="splits", metavar="SPLIT",
                        help="split to decode (repeatable; default: the test splits present)")
    parser.add_argument("--set", action="append", default=[], metavar="decode.KEY=VALUE",
                        help="change a decoding setting of every run (repeatable)")
    parser.add_argument("--models", nargs="+", help="only these runs of the record (default: all)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the new record's result.json")
    args = parser.parse_args(argv)

    console = Console()
    load_before = os.getloadavg()
    try:
        runs = redecode(args.record, args.splits, args.set, args.models, console)
    except AttnreproError as err:
        print(f"redecode: error: {err}", file=sys.stderr)
        return 2
    atomic_write_json(args.out / "result.json", {
        "benchmark": "redecode",
        "source_record": str(args.record),
        "overrides": args.set,
        **provenance(load_before),
        "note": "each run's training commit is under runs.NAME.trained_at; git is the commit that decoded",
        "runs": runs,
    })
    print_summary(console, runs)
    console.print(f"results: {args.out / 'result.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
