"""The captioning `paper` preset end to end, for a GPU machine: VGG-19 features on the training device, then
each model (Show and Tell, soft and hard attention) trains for --minutes at the paper's layer sizes; its words/s,
steps, validation BLEU-4 and the time one epoch of its data takes at that rate are printed and recorded.

The test splits are not scored (the runs are `train --no-evaluate`, so Java is not needed); the paper's numbers
come from training to early stopping: `attnrepro train xu2015 --preset paper --set data.encoder_weights=PATH`.

    python benchmarks/paper_preset.py --weights PATH/vgg19-dcbb9e9d.pth      # Flickr8k, 3 models x 2 minutes
    python benchmarks/paper_preset.py --random-weights --set data.dataset=karpathy \\
        --set data.karpathy_json=SLICE.json --set data.val_split=val --set data.test_splits=[test]

--random-weights saves a randomly initialised torchvision VGG-19 and uses it: the speed and the code path are
those of the real weights, the captions and their BLEU mean nothing.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

from rich.console import Console

from harness.benchmark import benchmark_parser, provenance
from harness.tables import Col, print_table
from harness.train import train
from reproductions import registry
from reproductions.common import rundir
from reproductions.common.io import atomic_path, atomic_write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flickr8k import extract_features  # noqa: E402  (the sibling benchmark's feature step, timed the same way)


def random_vgg19(folder: Path) -> Path:
    import torch
    import torchvision

    path = folder / "vgg19-random.pth"
    with atomic_path(path) as tmp:
        torch.save(torchvision.models.vgg19().state_dict(), tmp)
    return path


def tokens_per_epoch(overrides: list[str]) -> int:
    """Target tokens (words and </s>, captions cut at data.max_len) in one epoch of the training split."""
    from reproductions.captioning.data.captions import load_captions

    data = registry.get("xu2015").load_config("paper", [o for o in overrides if o.startswith("data.")]).data
    train_split = load_captions(data, data.train_split)
    return sum(min(len(c.split()), data.max_len) + 1 for caps in train_split.captions for c in caps)


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, ["vinyals2015", "xu2015", "xu2015-hard"],
                              "folder for runs and JSON (default: benchmarks/results/paper-preset-...)")
    parser.set_defaults(preset="paper")
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--weights", type=Path, help="the VGG-19 ImageNet weights file (torchvision's state dict)")
    weights.add_argument("--random-weights", action="store_true",
                         help="a randomly initialised VGG-19: speed and code path only, the captions mean nothing")
    parser.add_argument("--minutes", type=float, default=2.0, help="training minutes per model (default: 2)")
    args = parser.parse_args(argv)

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or Path("benchmarks/results") / f"paper-preset-{stamp}"
    console = Console()
    load_before = os.getloadavg()
    # kept beside the runs (which name it in their configs, for `attnrepro caption RUN_DIR`); .gitignore'd
    weights_file = random_vgg19(out) if args.random_weights else args.weights
    overrides = [*args.set, f"data.encoder_weights={weights_file.resolve()}"]
    features = extract_features(args.preset, overrides, console)
    epoch_tokens = tokens_per_epoch(overrides)
    runs = {}
    for name in args.models:
        console.rule(f"{name} ({args.preset}, {args.minutes:g} minutes)")
        run_dir = train(name, args.preset, overrides=[*overrides, f"train.max_minutes={args.minutes}"],
                        seed=args.seed, run_dir=out / "runs" / name, wandb="disabled", evaluate_after=False)
        training = rundir.RunDir(run_dir).metrics()["training"]
        rate = training["target_tokens_per_s"]
        runs[name] = {"run_dir": str(run_dir), "training": training,
                      "seconds_per_epoch": round(epoch_tokens / rate, 1) if rate else None}
    result = {
        "benchmark": "paper-preset",
        "preset": args.preset,
        "seed": args.seed,
        "overrides": args.set,
        "weights": "random (speed and code path only)" if args.random_weights else str(args.weights),
        "minutes_per_model": args.minutes,
        **provenance(load_before),
        "features": features,
        "tokens_per_epoch": epoch_tokens,
        "runs": runs,
    }
    atomic_write_json(out / "result.json", result)
    columns = [Col("model"), Col("device"), Col("precision")] + [
        Col(header, "number") for header in ("parameters", "steps", "words/s", "s per epoch", "val BLEU-4 (greedy)")]
    rows = []
    for name, run in runs.items():
        t = run["training"]
        rows.append([name, t["accelerator"], t["precision"], f"{t['parameters'] / 1e6:.1f}M", str(t["steps"]),
                     f"{t['target_tokens_per_s']:.0f}", str(run["seconds_per_epoch"]),
                     f"{t.get('best_val_bleu4') or 0:.2f}"])
    print_table(console, f"`{args.preset}` preset, {args.minutes:g} training minutes per model", columns, rows)
    console.print(f"results: {out / 'result.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
