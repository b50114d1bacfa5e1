"""The `attnrepro` command line. Heavy imports (torch, lightning, wandb) wait until a command needs them,
so `attnrepro --help` and `attnrepro list` answer at once."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_list(args) -> None:
    import json

    from rich.console import Console

    from reproductions import registry

    entries = [{"name": r.name, "aliases": list(r.aliases), "model": r.title, "paper": r.paper, "arxiv": r.arxiv,
                "task": r.task, "role": r.role, "baseline": r.baseline, "presets": r.presets(),
                "presets_from": r.presets_from, "datasets": list(r.datasets)} for r in registry.REPRODUCTIONS.values()]
    if args.json:
        print(json.dumps(entries, indent=2))
        return
    from .tables import Col, print_table

    columns = [Col("name"), Col("model", "text", optional=True), Col("task", optional=True), Col("role", optional=True),
               Col("baseline"), Col("presets", "text"),
               Col("paper", "text", optional=True), Col("aliases", "text", optional=True),
               Col("datasets", "text", optional=True)]
    rows = [[e["name"], e["model"], e["task"], e["role"], e["baseline"] or "-", ", ".join(e["presets"]),
             f"{e['paper']} (arXiv:{e['arxiv']})", ", ".join(e["aliases"]), ", ".join(e["datasets"])]
            for e in entries]
    print_table(Console(), "attnrepro reproductions", columns, rows)


def _cmd_train(args) -> None:
    from reproductions import registry

    if args.resume is not None:
        if args.name or args.set or args.pair or args.run_dir:
            raise SystemExit("attnrepro train: --resume RUN_DIR takes the run's own name, preset, config and seed; "
                             "give no NAME, --set, --pair or --run-dir with it")
        from .train import resume

        run_dir = resume(args.resume, wandb=args.wandb, devices=_devices(args.devices), nodes=args.nodes,
                         evaluate_after=not args.no_evaluate)
        print(f"run directory: {run_dir}")
        return
    if not args.name:
        raise SystemExit("attnrepro train: give a reproduction NAME (see `attnrepro list`) or --resume RUN_DIR")
    # Check the name, preset and overrides before torch and Lightning load: a typo fails in a blink.
    registry.get(args.name).load_config(args.preset, args.set, pair=args.pair)
    from .train import train

    run_dir = train(args.name, args.preset, pair=args.pair, overrides=args.set, seed=args.seed,
                    run_dir=args.run_dir, wandb=args.wandb, devices=_devices(args.devices), nodes=args.nodes,
                    evaluate_after=not args.no_evaluate)
    print(f"run directory: {run_dir}")


def _devices(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def _cmd_evaluate(args) -> None:
    from .evaluate import evaluate

    evaluate(args.target, splits=args.split or None, beam=args.beam, decode_overrides=args.set)


def _cmd_translate(args) -> None:
    from .translate import translate

    translate(args.checkpoint, sys.stdin.readlines(), beam=args.beam, plot_attention=args.plot_attention,
              layer=args.layer, head=args.head, view=args.attention)


def _cmd_caption(args) -> None:
    from .caption import caption

    caption(args.checkpoint, args.images, beam=args.beam, plot_attention=args.plot_attention)


def _cmd_sweep(args) -> None:
    from reproductions.common.errors import AttnreproError

    from .sweep import sweep

    status = sweep(args.plan, executor=args.executor, dry_run=args.dry_run, slots=args.slots,
                   slurm_settings_path=args.slurm_settings, runs_per_gpu=args.runs_per_gpu)
    failed = [label for label, s in status.items() if s["state"] == "failed"]
    if failed:
        raise AttnreproError(f"{len(failed)} of {len(status)} runs failed: {', '.join(failed)}")


def _cmd_report(args) -> None:
    from .report import build_report

    out = args.out or Path("reports") / "report"
    build_report(args.targets, out, with_tests=not args.no_tests)
    print(f"report: {out / 'report.md'}, {out / 'report.html'} (figures in {out / 'figures'})")


def _cmd_reproduce(args) -> None:
    from .reproduce import reproduce

    reproduce(args.preset, out=args.out, seed=args.seed, wandb=args.wandb, only=args.only, overrides=args.set,
              executor=args.executor, seeds=args.seeds, slots=args.slots, report=not args.no_report,
              dry_run=args.dry_run, runs_per_gpu=args.runs_per_gpu)


def _cmd_submit(args) -> None:
    from leaderboards.client import submit

    receipt = submit(args.run_dir, args.board, server=args.server, model=args.model, wandb_url=args.wandb_url,
                     notes=args.notes)
    scores = ", ".join(f"{k} {v:.2f}" for k, v in receipt["scores"].items())
    again = " (already stored: this is the earlier submission)" if receipt["replayed"] else ""
    print(f"submission #{receipt['id']} on {receipt['board']}: rank {receipt['rank']}; {scores} "
          f"(scored by the server){again}\n{receipt['url']}")


def _cmd_leaderboard(args) -> None:
    from leaderboards import admin

    if args.action == "serve":
        from leaderboards.app import Settings, serve

        serve(Settings(database_url=args.db, boards_dir=args.boards, references_root=_references(args),
                       daily_limit=args.daily_limit, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                       body_timeout_s=args.body_timeout, score_timeout_s=args.score_timeout,
                       score_memory_mb=args.score_memory_mb),
              host=args.host, port=args.port, workers=args.workers)
    elif args.action == "export":
        from leaderboards.client import export

        print(f"wrote {len(export(args.out, server=args.server))} files to {args.out}")
    elif args.action == "migrate":
        print(admin.migrate(args.db))
    elif args.action == "boards":
        _print_table("leaderboard boards", admin.boards(args.boards, _references(args)))
    elif args.action == "user" and args.what == "add":
        print(admin.add_user(args.db, args.name, admin=args.admin, daily_limit=args.daily_limit))
    elif args.action == "token" and args.what == "add":
        print(admin.add_token(args.db, args.name, label=args.label))
    elif args.action == "token" and args.what == "revoke":
        print(admin.revoke_token(args.db, args.id))
    elif args.action == "user":
        _print_table("users", admin.users(args.db))
    else:
        _print_table("API tokens", admin.tokens(args.db, args.name))


def _print_table(title: str, rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in rows[0] if rows else ("none",):
        table.add_column(column, no_wrap=column == "board")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    Console().print(table)


def _references(args) -> Path | None:
    from reproductions.common.data.sources import data_root

    return args.references or data_root()


def _leaderboard_parser(sub) -> None:
    p = sub.add_parser("submit", help="submit a run's outputs to a leaderboard (the server scores them)")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--board", required=True, help="board name (see the server's front page or /api/boards)")
    p.add_argument("--server", help="server URL (default: $ATTNREPRO_LEADERBOARD_URL, ~/.config/attnrepro/"
                                    "leaderboard.yaml, else http://127.0.0.1:8000); the token comes from "
                                    "$ATTNREPRO_TOKEN or that file")
    p.add_argument("--model", help="name shown on the board (default: REPRODUCTION (PRESET, seed N))")
    p.add_argument("--wandb-url", help="link to the run in W&B (default: the run's own, when it was online)")
    p.add_argument("--notes", help="free text shown on the submission's page")
    p.set_defaults(func=_cmd_submit)

    p = sub.add_parser("leaderboard", help="the leaderboard service: serve, users and tokens, boards, export")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    db_help = ("database URL: sqlite:///FILE or postgresql://... (default: $ATTNREPRO_LEADERBOARD_DB, else a SQLite "
               "file in ~/.local/share/attnrepro)")
    refs_help = "folder holding the reference files, laid out as shared/data (default: $ATTNREPRO_DATA)"
    a = actions.add_parser("serve", help="run the server (FastAPI under uvicorn)")
    a.add_argument("--host", default="127.0.0.1")
    a.add_argument("--port", type=int, default=8000)
    a.add_argument("--db", help=db_help)
    a.add_argument("--boards", type=Path, help="folder of board YAML files (default: leaderboards/boards)")
    a.add_argument("--references", type=Path, help=refs_help)
    a.add_argument("--daily-limit", type=int, default=50, help="submissions per user per 24 hours (default: 50)")
    a.add_argument("--max-upload-mb", type=float, default=8.0, help="largest request body (default: 8 MB)")
    a.add_argument("--workers", type=int, default=1,
                   help="server processes; scoring is CPU-bound, so up to one per core (default: 1)")
    a.add_argument("--body-timeout", type=float, default=30.0,
                   help="seconds a request body may stall before the server answers 408 (default: 30)")
    a.add_argument("--score-timeout", type=float, default=300.0,
                   help="seconds the metric code may take on one submission (default: 300)")
    a.add_argument("--score-memory-mb", type=int, default=3072,
                   help="memory the metric code (with Java) may use on one submission (default: 3072 MB)")
    a = actions.add_parser("migrate", help="upgrade the database's schema in place to this release's (Alembic)")
    a.add_argument("--db", help=db_help)
    a = actions.add_parser("boards", help="list the boards and whether they are open here")
    a.add_argument("--boards", type=Path)
    a.add_argument("--references", type=Path, help=refs_help)
    a = actions.add_parser("export", help="write the boards as static Markdown and HTML")
    a.add_argument("--out", type=Path, default=Path("leaderboards/published"))
    a.add_argument("--server", help="server URL (as for submit)")
    for noun in ("user", "token"):
        a = actions.add_parser(noun, help=f"admin: {noun}s (works on the database directly)")
        what = a.add_subparsers(dest="what", required=True, metavar="WHAT")
        w = what.add_parser("add", help=f"add a {noun} (prints the new token once)")
        w.add_argument("name", help="user name")
        w.add_argument("--db", help=db_help)
        if noun == "user":
            w.add_argument("--admin", action="store_true")
            w.add_argument("--daily-limit", type=int, help="this user's submissions per 24 hours")
        else:
            w.add_argument("--label", help="what the token is for")
        w = what.add_parser("list", help=f"list {noun}s")
        w.add_argument("name", nargs="?", help="only this user's tokens" if noun == "token" else argparse.SUPPRESS)
        w.add_argument("--db", help=db_help)
        if noun == "token":
            w = what.add_parser("revoke", help="revoke a token by its id (see token list)")
            w.add_argument("id", type=int)
            w.add_argument("--db", help=db_help)
    p.set_defaults(func=_cmd_leaderboard)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnrepro", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="the registered reproductions, their baselines, presets and datasets")
    p.add_argument("--json", action="store_true", help="print the registry as JSON (for scripts)")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("train", help="fit a reproduction, then score the test splits present")
    p.add_argument("name", nargs="?", help="reproduction name or alias (see `attnrepro list`)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue an interrupted run from its newest checkpoint (same config, seed, data order)")
    p.add_argument("--preset", default="tiny", help="config preset: tiny, quick, cpu, paper (default: tiny)")
    p.add_argument("--pair", help="language pair src-tgt, e.g. en-de (overrides data.pair)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.max_epochs=3 (repeatable)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--run-dir", type=Path, help="where the run is written (default: runs/NAME/...)")
    p.add_argument("--wandb", choices=["offline", "online", "disabled"],
                   help="W&B mode (default: $WANDB_MODE, else offline)")
    p.add_argument("--devices", default="auto", help="devices per node for Lightning, e.g. 2 (default: auto)")
    p.add_argument("--nodes", type=int, default=1, help="nodes for multi-node DDP (default: 1)")
    p.add_argument("--no-evaluate", action="store_true", help="skip scoring the test splits after training")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="decode and score splits with a trained model")
    p.add_argument("target", type=Path, help="a run directory or a .ckpt file")
    p.add_argument("--split", action="append", help="split to score (repeatable; default: the test splits present)")
    p.add_argument("--beam", type=int, help="beam width (default: the run's config; 1 is greedy)")
    p.add_argument("--set", action="append", default=[], metavar="decode.KEY=VALUE",
                   help="change a decoding setting, e.g. --set decode.length_penalty=1.0 (repeatable); the scores "
                        "are printed, not written into the run's metrics.json")
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

    p = sub.add_parser("sweep", help="run a plan of many runs (papers x baselines x seeds x data) with submitit")
    p.add_argument("plan", type=Path, help="plan YAML (see harness/sweep.py or the README)")
    p.add_argument("--executor", choices=["local", "slurm", "debug"], default="local",
                   help="local: this machine's GPUs (or --slots CPU processes); slurm: sbatch jobs; debug: in-process")
    p.add_argument("--slots", type=int, help="runs at once on a machine without GPUs (default: 1)")
    p.add_argument("--runs-per-gpu", type=int, default=1, metavar="N",
                   help="local executor: pack up to N small runs onto each GPU at once (default: 1)")
    p.add_argument("--slurm-settings", type=Path, metavar="FILE",
                   help="partition, account, time... (default: $ATTNREPRO_SLURM_SETTINGS, else "
                        "~/.config/attnrepro/slurm.yaml)")
    p.add_argument("--dry-run", action="store_true", help="show the runs (and the sbatch script) without starting any")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("report", help="papers vs baselines: CIs over seeds, paired tests, verdicts, figures")
    p.add_argument("targets", type=Path, nargs="+", metavar="RUN_DIR_OR_SWEEP")
    p.add_argument("--out", type=Path, help="output folder (default: reports/report)")
    p.add_argument("--no-tests", action="store_true", help="skip the paired bootstrap tests (faster)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("reproduce", help="train every paper and its fixed-vector baseline and compare them")
    p.add_argument("--preset", default="quick")
    p.add_argument("--out", type=Path, help="output folder (default: runs/reproduce-PRESET)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--seeds", type=int, default=1, help="seeds per model, from --seed on (CIs need 2 or more)")
    p.add_argument("--executor", choices=["local", "slurm", "debug"], default="local")
    p.add_argument("--slots", type=int, help="runs at once without GPUs (default: 1)")
    p.add_argument("--runs-per-gpu", type=int, default=1, metavar="N",
                   help="local executor: pack up to N small runs onto each GPU at once (the gpu preset: 5)")
    p.add_argument("--no-report", action="store_true", help="skip the Markdown/HTML report")
    p.add_argument("--dry-run", action="store_true",
                   help="print each paper model and the baseline preset it is paired with (same data); run nothing")
    p.add_argument("--only", action="append", help="only this paper (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--wandb", choices=["offline", "online", "disabled"])
    p.set_defaults(func=_cmd_reproduce)

    _leaderboard_parser(sub)
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
