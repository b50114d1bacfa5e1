"""The `attnrepro` command line. Heavy imports (torch, lightning, wandb) wait until a command needs them,
so `attnrepro --help` and `attnrepro list` answer at once."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_list(args) -> None:
    from rich.console import Console
    from rich.table import Table

    from reproductions import registry

    table = Table(title="attnrepro reproductions")
    for column in ("name", "model", "paper", "task", "role", "baseline", "presets", "datasets"):
        table.add_column(column)
    for r in registry.REPRODUCTIONS.values():
        name = r.name + (f" ({', '.join(r.aliases)})" if r.aliases else "")
        table.add_row(name, r.title, f"{r.paper} (arXiv:{r.arxiv})", r.task, r.role, r.baseline or "-",
                      ", ".join(r.presets()), ", ".join(r.datasets))
    Console().print(table)


def _cmd_train(args) -> None:
    from reproductions import registry

    # Check the name, preset and overrides before torch and Lightning load: a typo fails in a blink.
    registry.get(args.name).load_config(args.preset, args.set, pair=args.pair)
    from .train import train

    run_dir = train(args.name, args.preset, pair=args.pair, overrides=args.set, seed=args.seed,
                    run_dir=args.run_dir, wandb=args.wandb, devices=args.devices,
                    evaluate_after=not args.no_evaluate)
    print(f"run directory: {run_dir}")


def _cmd_evaluate(args) -> None:
    from .evaluate import evaluate

    evaluate(args.target, splits=args.split or None, beam=args.beam)


def _cmd_translate(args) -> None:
    from .translate import translate

    translate(args.checkpoint, sys.stdin.readlines(), beam=args.beam, plot_attention=args.plot_attention,
              layer=args.layer, head=args.head, view=args.attention)


def _cmd_caption(args) -> None:
    from .caption import caption

    caption(args.checkpoint, args.images, beam=args.beam, plot_attention=args.plot_attention)


def _cmd_reproduce(args) -> None:
    from .reproduce import reproduce

    reproduce(args.preset, out=args.out, seed=args.seed, wandb=args.wandb, only=args.only, overrides=args.set)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnrepro", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="the registered reproductions, their baselines, presets and datasets")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("train", help="fit a reproduction, then score the test splits present")
    p.add_argument("name", help="reproduction name or alias (see `attnrepro list`)")
    p.add_argument("--preset", default="tiny", help="config preset: tiny, quick, cpu, paper (default: tiny)")
    p.add_argument("--pair", help="language pair src-tgt, e.g. en-de (overrides data.pair)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.max_epochs=3 (repeatable)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--run-dir", type=Path, help="where the run is written (default: runs/NAME/...)")
    p.add_argument("--wandb", choices=["offline", "online", "disabled"],
                   help="W&B mode (default: $WANDB_MODE, else offline)")
    p.add_argument("--devices", default="auto", help="devices for Lightning (default: auto)")
    p.add_argument("--no-evaluate", action="store_true", help="skip scoring the test splits after training")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="decode and score splits with a trained model")
    p.add_argument("target", type=Path, help="a run directory or a .ckpt file")
    p.add_argument("--split", action="append", help="split to score (repeatable; default: the test splits present)")
    p.add_argument("--beam", type=int, help="beam width (default: the run's config; 1 is greedy)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("translate", help="translate sentences from stdin to stdout")
    p.add_argument("checkpoint", type=Path, help="a .ckpt file or a run directory")
    p.add_argument("--beam", type=int)
    p.add_argument("--plot-attention", type=Path, metavar="FILE.png",
                   help="write the alignment heatmap (Bahdanau et al. Fig. 3); FILE-2.png... for later lines")
    p.add_argument("--attention", choices=["cross", "encoder"], default="cross",
                   help="what to plot: output over source (default) or encoder self-attention (Vaswani Figs. 3-5)")
    p.add_argument("--layer", type=int, help="layer to plot for multi-layer models (default: the last)")
    p.add_argument("--head", type=int, help="head to plot for multi-head models (default: mean over heads)")
    p.set_defaults(func=_cmd_translate)

    p = sub.add_parser("caption", help="caption image files (prints IMAGE<TAB>caption)")
    p.add_argument("checkpoint", type=Path, help="a .ckpt file or a run directory")
    p.add_argument("images", type=Path, nargs="+", metavar="IMAGE")
    p.add_argument("--beam", type=int)
    p.add_argument("--plot-attention", type=Path, metavar="FILE.png",
                   help="per-word attention over the image (Xu et al. Figs. 2-3); FILE-2.png... for later images")
    p.set_defaults(func=_cmd_caption)

    p = sub.add_parser("reproduce", help="train every paper and its fixed-vector baseline and compare them")
    p.add_argument("--preset", default="quick")
    p.add_argument("--out", type=Path, help="output folder (default: runs/reproduce-PRESET)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--only", action="append", help="only this paper (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--wandb", choices=["offline", "online", "disabled"])
    p.set_defaults(func=_cmd_reproduce)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from reproductions.common.errors import AttnreproError

    try:
        args.func(args)
    except AttnreproError as err:
        print(f"attnrepro: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attnrepro: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
