"""The `attnrepro` command line: train, score and compare the papers that made attention mainstream, each against
the fixed-vector model it replaced.

Heavy imports (torch, lightning, wandb) wait until a command needs them, so that `attnrepro --help` and
`attnrepro list` answer at once. Exit statuses (docs/cli.md): 0 done; 2 a mistake the user can fix (a read-only,
full or forbidden disk included), said in one line on stderr; 1 an unexpected failure (a bug, with its
traceback); 130 interrupted (Ctrl-C); 141 stdout was closed early (`attnrepro list | head`), quietly, as a shell
reports any command ended by SIGPIPE.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import json
import os
import sys
from pathlib import Path

from reproductions.common.errors import AttnreproError

DEFAULT_PRESET = "quick"  # the same for train and reproduce: a few CPU minutes on real data

DESCRIPTION = """Reproductions of the papers that made attention mainstream (RNNsearch, the Transformer, Show, Attend
and Tell), each against the fixed-vector model it replaced: train, score, compare, sweep, submit to a leaderboard."""

EPILOG = """examples:
  attnrepro list                                    the reproductions, their baselines and presets
  attnrepro train bahdanau2014 --preset tiny        a run of seconds, to see that everything works
  attnrepro train bahdanau2014 --print-config       the resolved quick config as YAML; nothing is trained
  attnrepro reproduce                               every paper against its baseline (quick: ~15 min, 2 cores)
  attnrepro evaluate RUN_DIR --split val --beam 1   score a trained run again, greedily
  echo "A dog runs." | attnrepro translate RUN_DIR  translate with a trained model
  attnrepro explore RUN_DIR [RUN_DIR ...]           a local page: outputs and attention, side by side
  attnrepro sweep plans/seeds.yaml --dry-run        the runs of a plan, without starting any

exit status: 0 done; 2 a mistake in the command or a disk that cannot be written, said in one line;
1 a bug (please report the traceback); 130 interrupted; 141 stdout closed early (e.g. by `| head`).
See docs/cli.md."""

SWEEP_DESCRIPTION = """Run a plan: many runs, each in its own directory, with submitit's local or SLURM executors.

A plan is a YAML file naming reproductions, presets, seeds, language pairs and overrides; every combination
is one run, written under the plan's `out` folder (default runs/sweeps/NAME). For example:

  name: seeds
  retries: 1
  runs:
    - reproductions: [bahdanau2014, cho2014]
      presets: [quick]
      seeds: [1, 2, 3]

A finished run is skipped, an interrupted one resumed, a failed one retried. plans/seeds.yaml is a full
example; README.md ("Sweeps, SLURM, resumption and reports") lists every key."""


class UsageError(AttnreproError):
    """A command line that asks for something impossible (no NAME, options that exclude each other)."""


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes read like every other error of the CLI: one line, `attnrepro: error:`, exit 2.
    Subcommands are _Parsers too (argparse makes them of the parent's class), and every one keeps its epilog of
    examples as written."""

    def __init__(self, *args, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message: str):
        self.exit(2, f"attnrepro: error: {message} (see `{self.prog} --help`)\n")


class _Version(argparse.Action):
    """--version: looked up only when asked (the git commit costs a subprocess)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def version_text() -> str:
    """`attnrepro 0.1.0`, and from a git checkout its commit: `attnrepro 0.1.0 (git 1a2b3c4d5e6f, modified)`."""
    from importlib import metadata

    from reproductions.common.rundir import git_commit

    try:
        version = metadata.version("attnrepro")
    except metadata.PackageNotFoundError:
        version = "(not installed)"
    git = git_commit()
    if git["commit"] == "unknown":
        return f"attnrepro {version}"
    return f"attnrepro {version} (git {git['commit'][:12]}{', modified' if git['dirty'] else ''})"


def _examples(*lines: tuple[str, str]) -> str:
    """A subcommand's epilog: (command line, what it does) pairs, aligned as in the top-level help."""
    width = max(len(command) for command, _ in lines)
    return "examples:\n" + "\n".join(f"  {command:<{width}}  {meaning}".rstrip() for command, meaning in lines)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(text)


def _existing(path: Path, hint: str) -> Path:
    if not path.exists():
        raise UsageError(f"{path} does not exist; {hint}")
    return path


def _json_console(as_json: bool):
    """With --json, stdout holds the JSON only: tables and progress go to stderr."""
    from .tables import console

    return console(stderr=as_json)


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))


def _cmd_list(args) -> None:
    from reproductions import registry

    entries = [{"name": r.name, "aliases": list(r.aliases), "model": r.title, "paper": r.paper, "arxiv": r.arxiv,
                "task": r.task, "role": r.role, "baseline": r.baseline, "presets": r.presets(),
                "presets_from": r.presets_from, "datasets": list(r.datasets)} for r in registry.REPRODUCTIONS.values()]
    if args.json:
        _print_json(entries)
        return
    from .tables import Col, console, print_table

    columns = [Col("name"), Col("model", "text", optional=True), Col("task", optional=True), Col("role", optional=True),
               Col("baseline"), Col("presets", "text"),
               Col("paper", "text", optional=True), Col("aliases", "text", optional=True),
               Col("datasets", "text", optional=True)]
    rows = [[e["name"], e["model"], e["task"], e["role"], e["baseline"] or "-", ", ".join(e["presets"]),
             f"{e['paper']} (arXiv:{e['arxiv']})", ", ".join(e["aliases"]), ", ".join(e["datasets"])]
            for e in entries]
    print_table(console(), "attnrepro reproductions", columns, rows)


def _cmd_config(args) -> None:
    if not args.list:
        raise UsageError("say what to show: `attnrepro config --list [NAME]` lists every config key")
    from . import config_reference

    configs = config_reference.as_json(args.name)
    if args.json:
        _print_json(configs)
        return
    from .tables import Col, console, print_table

    columns = [Col("key"), Col("type", "text", optional=True), Col("default", "text"), Col("meaning", "text")]
    for config in configs:
        rows = [[k["key"], k["type"], k["default"], k["meaning"] or "-"] for k in config["keys"]]
        print_table(console(), f"{config['config_class']} ({', '.join(config['used_by'])})", columns, rows)


def _cmd_train(args) -> None:
    from reproductions import registry

    if args.resume is not None:
        _resume(args)
        return
    if not args.name:
        raise UsageError("train needs a reproduction NAME (see `attnrepro list`) or --resume RUN_DIR")
    # The name, preset, file and overrides are checked before torch and Lightning load: a typo fails in a blink.
    repro = registry.get(args.name)
    preset = args.preset or DEFAULT_PRESET
    cfg = _train_config(repro, preset, args)
    if args.print_config:
        import yaml

        from reproductions.common.config import to_dict

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return
    from .runspec import RunSpec
    from .train import Launch, train_spec

    spec = RunSpec.new(repro.name, preset, 1 if args.seed is None else args.seed, args.pair, args.set, args.run_dir,
                       _devices(args.devices), args.nodes, cfg=cfg)
    run_dir = train_spec(spec, Launch(wandb=args.wandb, evaluate_after=not args.no_evaluate))
    print(f"run directory: {run_dir}")


def _train_config(repro, preset: str, args):
    """The resolved config of `attnrepro train`: the preset, --pair and --set; with --config FILE instead the
    config class's defaults, then FILE, then the entry's fixed overrides (what makes vinyals2015 a fixed-vector
    model), --set and --pair."""
    from reproductions.common.config import load_config

    cfg = repro.load_config(preset, args.set, pair=args.pair)
    if args.config is None:
        return cfg
    pair = [f"data.pair={args.pair}"] if args.pair else []
    return load_config(type(cfg), args.config, [*repro.fixed, *args.set, *pair])


def _resume(args) -> None:
    from reproductions.common import rundir

    given = [flag for flag, value in (("NAME", args.name), ("--preset", args.preset), ("--config", args.config),
                                      ("--print-config", args.print_config), ("--set", args.set),
                                      ("--pair", args.pair), ("--seed", args.seed is not None),
                                      ("--run-dir", args.run_dir)) if value]
    if given:
        raise UsageError(f"train --resume RUN_DIR takes the run's own name, preset, config and seed; "
                         f"leave out {', '.join(given)}")
    rundir.RunDir(args.resume).check()  # not a run directory: one line, before torch loads
    from .train import resume

    run_dir = resume(args.resume, wandb=args.wandb, devices=_devices(args.devices), nodes=args.nodes,
                     evaluate_after=not args.no_evaluate)
    print(f"run directory: {run_dir}")


def _devices(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def _cmd_evaluate(args) -> None:
    _existing(args.target, "give a run directory or a .ckpt file")
    from .evaluate import evaluate

    results = evaluate(args.target, splits=args.split or None, beam=args.beam, decode_overrides=args.set,
                       console=_json_console(args.json), allow_other_run=args.allow_other_run)
    if args.json:
        _print_json(results)


def _cmd_translate(args) -> None:
    _existing(args.checkpoint, "give a run directory or a .ckpt file")
    from .translate import translate

    translate(args.checkpoint, sys.stdin.readlines(), beam=args.beam, plot_attention=args.plot_attention,
              layer=args.layer, head=args.head, view=args.attention)


def _cmd_caption(args) -> None:
    _existing(args.checkpoint, "give a run directory or a .ckpt file")
    from .caption import caption

    caption(args.checkpoint, args.images, beam=args.beam, plot_attention=args.plot_attention)


def _cmd_explore(args) -> None:
    for run_dir in args.run_dirs:
        _existing(run_dir, "give run directories (or .ckpt files) of trained runs")
    from .explore import explore

    explore(args.run_dirs, host=args.host, port=args.port, device=args.device)


def _cmd_sweep(args) -> None:
    _existing(args.plan, "give a plan YAML file such as plans/seeds.yaml (see `attnrepro sweep --help`)")
    from .sweep import sweep
    from .tables import console

    status = sweep(args.plan, executor=args.executor, dry_run=args.dry_run, slots=args.slots,
                   slurm_settings_path=args.slurm_settings, runs_per_gpu=args.runs_per_gpu, console=console(),
                   detach=args.detach)
    failed = [label for label, s in status.items() if s["state"] == "failed"]
    if failed:
        raise AttnreproError(f"{len(failed)} of {len(status)} runs failed: {', '.join(failed)}")


def _cmd_report(args) -> None:
    for target in args.targets:
        _existing(target, "give run directories or sweep folders")
    from .report import build_report

    out = args.out or Path("reports") / "report"
    build_report(args.targets, out, with_tests=not args.no_tests)
    print(f"report: {out / 'report.md'}, {out / 'report.html'} (figures in {out / 'figures'})")


class _Presets(argparse.Action):
    """reproduce's --preset, repeatable: the first one given replaces the default (argparse's append would add to
    it), each later one adds a row. Unset, the value stays the default string."""

    def __call__(self, parser, namespace, value, option_string=None):
        given = getattr(namespace, self.dest)
        setattr(namespace, self.dest, (given if isinstance(given, list) else []) + [value])


def _check_reproduce(presets: list[str], only: list[str] | None, overrides: list[str]) -> None:
    """The presets, --only names and --set keys, before anything is planned or written: a typo is one line, not an
    empty plan. Each preset must belong to at least one chosen paper model, and each model named by --only must
    have at least one of the presets."""
    from reproductions import registry

    papers = registry.papers()
    chosen = [registry.get(name) for name in only] if only else papers
    for repro in chosen:
        if repro.role != "paper":
            raise UsageError(f"--only {repro.name}: that is a baseline, which runs beside its paper model; give a "
                             f"paper model: {', '.join(p.name for p in papers)}")
        if only and not set(presets) & set(repro.presets()):
            raise UsageError(f"{repro.name} has no preset {' or '.join(repr(p) for p in presets)}; its presets are: "
                             f"{', '.join(repro.presets())}")
    for preset in presets:
        having = [r for r in chosen if preset in r.presets()]
        if not having:
            known = list(dict.fromkeys(p for r in chosen for p in r.presets()))
            close = difflib.get_close_matches(preset, known, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            if "," in preset:
                hint = " Repeat --preset for several: --preset " + " --preset ".join(preset.split(",")) + "."
            whose = "named by --only " if only else ""
            raise UsageError(f"no paper model {whose}has a preset '{preset}'.{hint} Presets: {', '.join(known)}")
        for repro in having:
            repro.load_config(preset, overrides)  # an unknown key or a bad value names the --set


def _cmd_reproduce(args) -> None:
    if args.rehearse:
        return _cmd_rehearse(args)
    presets = list(dict.fromkeys(args.preset if isinstance(args.preset, list) else [args.preset]))
    _check_reproduce(presets, args.only, args.set)
    from .reproduce import reproduce

    results = reproduce(presets, out=args.out, seed=args.seed, wandb=args.wandb, only=args.only,
                        overrides=args.set, executor=args.executor, seeds=args.seeds, slots=args.slots,
                        report=not args.no_report, dry_run=args.dry_run, runs_per_gpu=args.runs_per_gpu,
                        console=_json_console(args.json), detach=args.detach, devices=args.devices, nodes=args.nodes)
    if args.json:  # a real run's results are keyed by (reproduction, preset)
        _print_json(results if args.dry_run else
                    {"preset": "+".join(presets), "presets": presets, "devices": args.devices, "nodes": args.nodes,
                     "runs": [{"reproduction": name, "preset": preset, "metrics": metrics}
                              for (name, preset), metrics in results.items()]})


def _cmd_rehearse(args) -> None:
    """reproduce --rehearse: the paper presets given (default: every one) at miniature scale, end to end."""
    from .rehearse import paper_presets, rehearse

    presets = list(dict.fromkeys(args.preset)) if isinstance(args.preset, list) else paper_presets(args.only)
    _check_reproduce(presets, args.only, args.set)
    items = rehearse(presets, only=args.only, out=args.out, devices=args.devices, overrides=args.set,
                     probe_steps=args.probe_steps, console=_json_console(args.json))
    if args.json:
        import dataclasses

        _print_json({"presets": presets, "runs": [dataclasses.asdict(i) for i in items]})


def _cmd_submit(args) -> None:
    _existing(args.run_dir, "give the run directory to submit")
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
        boards = admin.boards(args.boards, _references(args))
        if args.json:
            _print_json(boards)
        else:
            _print_records("leaderboard boards", boards)
    elif args.action == "user" and args.what == "add":
        print(admin.add_user(args.db, args.name, admin=args.admin, daily_limit=args.daily_limit))
    elif args.action == "token" and args.what == "add":
        print(admin.add_token(args.db, args.name, label=args.label))
    elif args.action == "token" and args.what == "revoke":
        print(admin.revoke_token(args.db, args.id))
    elif args.action == "user":
        _print_records("users", admin.users(args.db))
    else:
        _print_records("API tokens", admin.tokens(args.db, args.name))


def _print_records(title: str, rows: list[dict]) -> None:
    from .tables import console, print_records

    print_records(console(), title, rows)


def _references(args) -> Path | None:
    """--references, else $ATTNREPRO_DATA. Not the download cache (~/.cache/attnrepro/data): it has the layout but
    re-compresses each .gz file, whose sha256 then differs from the one its board pins, so every board would
    close as "fails its checksum" instead of saying that no reference folder was given."""
    from reproductions.common.data.sources import data_root

    return args.references or data_root()


def _submit_parser(sub) -> None:
    p = sub.add_parser("submit", help="submit a run's outputs to a leaderboard (the server scores them)",
                       epilog=_examples(("attnrepro submit RUN_DIR --board multi30k-2016-en-de",
                                         "to the server of $ATTNREPRO_LEADERBOARD_URL"),
                                        ("attnrepro submit RUN_DIR --board flickr8k-test --server URL",
                                         "to another server")))
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run directory whose hypotheses are sent")
    p.add_argument("--board", required=True, help="board name (see the server's front page or /api/boards)")
    p.add_argument("--server", help="server URL (default: $ATTNREPRO_LEADERBOARD_URL, ~/.config/attnrepro/"
                                    "leaderboard.yaml, else http://127.0.0.1:8000); the token comes from "
                                    "$ATTNREPRO_TOKEN or that file")
    p.add_argument("--model", help="name shown on the board (default: REPRODUCTION (PRESET, seed N))")
    p.add_argument("--wandb-url", help="link to the run in W&B (default: the run's own, when it was online)")
    p.add_argument("--notes", help="free text shown on the submission's page")
    p.set_defaults(func=_cmd_submit)


DB_HELP = ("database URL: sqlite:///FILE or postgresql://... (default: $ATTNREPRO_LEADERBOARD_DB, else a SQLite "
           "file in ~/.local/share/attnrepro)")
REFS_HELP = ("folder holding each board's reference files, as published, at the paths the board names (e.g. "
             "multi30k/task1/raw/test_2016_flickr.de.gz); default: $ATTNREPRO_DATA")


def _leaderboard_parser(sub) -> None:
    p = sub.add_parser("leaderboard", help="the leaderboard service: serve, users and tokens, boards, export",
                       epilog=_examples(("attnrepro leaderboard boards", "which boards can open here"),
                                        ("attnrepro leaderboard user add alice", "a user and their first token"),
                                        ("attnrepro leaderboard serve --port 8000", "run the server")))
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    _serve_parser(actions)
    _board_admin_parsers(actions)
    for noun in ("user", "token"):
        _account_parser(actions, noun)
    p.set_defaults(func=_cmd_leaderboard)


def _serve_parser(actions) -> None:
    a = actions.add_parser("serve", help="run the server (FastAPI under uvicorn)", epilog=_examples(
        ("attnrepro leaderboard serve", "this machine only, port 8000, SQLite"),
        ("attnrepro leaderboard serve --host 0.0.0.0 --db postgresql://HOST/DB --workers 4", "open to others")))
    a.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    a.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    a.add_argument("--db", help=DB_HELP)
    a.add_argument("--boards", type=Path, help="folder of board YAML files (default: leaderboards/boards)")
    a.add_argument("--references", type=Path, help=REFS_HELP)
    a.add_argument("--daily-limit", type=int, default=50, help="submissions per user per 24 hours (default: 50)")
    a.add_argument("--max-upload-mb", type=float, default=8.0, help="largest request body (default: 8 MB)")
    a.add_argument("--workers", type=_positive, default=1,
                   help="server processes; scoring is CPU-bound, so up to one per core (default: 1)")
    a.add_argument("--body-timeout", type=float, default=30.0,
                   help="seconds a request body may stall before the server answers 408 (default: 30)")
    a.add_argument("--score-timeout", type=float, default=300.0,
                   help="seconds the metric code may take on one submission (default: 300)")
    a.add_argument("--score-memory-mb", type=int, default=3072,
                   help="memory the metric code (with Java) may use on one submission (default: 3072 MB)")


def _board_admin_parsers(actions) -> None:
    """migrate, boards, export."""
    a = actions.add_parser("migrate", help="upgrade the database's schema in place to this release's (Alembic)",
                           epilog=_examples(("attnrepro leaderboard migrate", "the default SQLite database"),
                                            ("attnrepro leaderboard migrate --db postgresql://HOST/attnrepro",
                                             "a PostgreSQL one")))
    a.add_argument("--db", help=DB_HELP)
    a = actions.add_parser("boards", help="list the boards and whether they are open here", epilog=_examples(
        ("attnrepro leaderboard boards", "each board, open or closed and why"),
        ("attnrepro leaderboard boards --references ~/data --json", "against another data folder, as JSON")))
    a.add_argument("--boards", type=Path, help="folder of board YAML files (default: leaderboards/boards)")
    a.add_argument("--references", type=Path, help=REFS_HELP)
    a.add_argument("--json", action="store_true", help="print the boards as JSON (for scripts)")
    a = actions.add_parser("export", help="write the boards as static Markdown and HTML", epilog=_examples(
        ("attnrepro leaderboard export", "the local server's boards into leaderboards/published"),
        ("attnrepro leaderboard export --server URL --out site/", "another server's, elsewhere")))
    a.add_argument("--out", type=Path, default=Path("leaderboards/published"),
                   help="output folder (default: leaderboards/published)")
    a.add_argument("--server", help="server URL (as for submit)")


def _account_parser(actions, noun: str) -> None:
    """user or token: add, list (and revoke a token)."""
    add = (("attnrepro leaderboard user add alice --daily-limit 100", "a user, with their first token")
           if noun == "user" else ("attnrepro leaderboard token add alice --label laptop", "another token"))
    listing = (("attnrepro leaderboard user list", "every user") if noun == "user" else
               ("attnrepro leaderboard token list alice", "alice's tokens"))
    a = actions.add_parser(noun, help=f"admin: {noun}s (works on the database directly)",
                           epilog=_examples(add, listing))
    what = a.add_subparsers(dest="what", required=True, metavar="WHAT")
    w = what.add_parser("add", help=f"add a {noun} (prints the new token once)", epilog=_examples(add))
    w.add_argument("name", help="user name")
    w.add_argument("--db", help=DB_HELP)
    if noun == "user":
        w.add_argument("--admin", action="store_true", help="make the user an administrator")
        w.add_argument("--daily-limit", type=int, help="this user's submissions per 24 hours")
    else:
        w.add_argument("--label", help="what the token is for")
    w = what.add_parser("list", help=f"list {noun}s", epilog=_examples(listing))
    w.add_argument("name", nargs="?", help="only this user's tokens" if noun == "token" else argparse.SUPPRESS)
    w.add_argument("--db", help=DB_HELP)
    if noun == "token":
        w = what.add_parser("revoke", help="revoke a token by its id (see token list)",
                            epilog=_examples(("attnrepro leaderboard token revoke 3", "the token with id 3")))
        w.add_argument("id", type=int, help="the token's id")
        w.add_argument("--db", help=DB_HELP)


def _preset_help() -> str:
    """Every preset of the registry (the YAML files in the configs/ folders: no torch is imported)."""
    from reproductions import registry

    names = dict.fromkeys(p for r in registry.REPRODUCTIONS.values() for p in r.presets())
    return (f"config preset (default: {DEFAULT_PRESET}): {', '.join(names)}. tiny: seconds, a smoke test; quick: "
            "minutes on a CPU; cpu: the CPU benchmark (~30 min); gpu: minutes on one GPU; paper*: the paper's "
            "settings. `attnrepro list` shows which model has which")


def _train_parser(sub, preset_help: str) -> None:
    examples = _examples(
        ("attnrepro train bahdanau2014 --preset quick", "a few CPU minutes on real data"),
        ("attnrepro train cho2014 --preset tiny --set train.max_epochs=3", "seconds; one key overridden"),
        ("attnrepro train vaswani2017 --pair en-de --print-config", "the resolved config as YAML; trains nothing"),
        ("attnrepro train --resume RUN_DIR", "continue an interrupted run"))
    p = sub.add_parser("train", help="fit a reproduction, then score the test splits present", epilog=examples)
    p.add_argument("name", nargs="?", help="reproduction name or alias (see `attnrepro list`)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue an interrupted run from its newest checkpoint (same config, seed, data order)")
    p.add_argument("--preset", help=preset_help)
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="train from this config file instead, e.g. a run's config.yaml: the keys it leaves out keep "
                        "their defaults, and --set and --pair apply on top; the run is named after --preset")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (after --config, --set and --pair) as YAML and train nothing")
    p.add_argument("--pair", help="language pair src-tgt, e.g. en-de (overrides data.pair)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.max_epochs=3 (repeatable)")
    p.add_argument("--seed", type=int, help="random seed: weights, dropout and data order (default: 1)")
    p.add_argument("--run-dir", type=Path, help="where the run is written (default: runs/NAME/...)")
    p.add_argument("--wandb", choices=["offline", "online", "disabled"],
                   help="W&B mode (default: $WANDB_MODE, else offline)")
    p.add_argument("--devices", default="auto", help="devices per node for Lightning, e.g. 2 (default: auto)")
    p.add_argument("--nodes", type=_positive, default=1, help="nodes for multi-node DDP (default: 1)")
    p.add_argument("--no-evaluate", action="store_true", help="skip scoring the test splits after training")
    p.set_defaults(func=_cmd_train)


def _model_parsers(sub) -> None:
    """The commands that use a trained model: evaluate, translate, caption."""
    beam_help = "beam width (default: the run's config; 1 is greedy); another than the run's: see --set"
    p = sub.add_parser("evaluate", help="decode and score splits with a trained model", epilog=_examples(
        ("attnrepro evaluate RUN_DIR --beam 5 --json", "the test splits with beam 5, as JSON"),
        ("attnrepro evaluate RUN_DIR --split val --beam 1", "the validation split, greedily"),
        ("attnrepro evaluate RUN_DIR --set decode.length_penalty=1.0", "another setting, written beside the "
         "run's record in RUN_DIR/evaluations/")))
    p.add_argument("target", type=Path, help="a run directory or a .ckpt file")
    p.add_argument("--split", action="append", help="split to score (repeatable; default: the test splits present)")
    p.add_argument("--beam", type=_positive, help=beam_help)
    p.add_argument("--set", action="append", default=[], metavar="decode.KEY=VALUE",
                   help="change a decoding setting, e.g. --set decode.length_penalty=1.0 (repeatable; --beam N is "
                        "--set decode.beam=N). Scores of a setting other than the run's own go to "
                        "RUN_DIR/evaluations/SETTING/, beside the run's metrics.json, which keeps its config's scores")
    p.add_argument("--json", action="store_true", help="print the scores as JSON (the table goes to stderr)")
    p.add_argument("--allow-other-run", action="store_true",
                   help="score a checkpoint that another run wrote into this run's metrics.json (refused otherwise)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("translate", help="translate sentences from stdin to stdout", epilog=_examples(
        ("attnrepro translate RUN_DIR --beam 5 < test.en > test.hyp.de", "a file, one sentence a line"),
        ('echo "A dog runs." | attnrepro translate RUN_DIR --plot-attention align.png', "and its alignment")))
    p.add_argument("checkpoint", type=Path, help="a .ckpt file or a run directory")
    p.add_argument("--beam", type=_positive, help=beam_help)
    p.add_argument("--plot-attention", type=Path, metavar="FILE.png",
                   help="write the alignment heatmap (Bahdanau et al. Fig. 3); FILE-2.png... for later lines")
    p.add_argument("--attention", choices=["cross", "encoder", "decoder"], default="cross",
                   help="what to plot: output over source (default), encoder self-attention (Vaswani Figs. 3-5) "
                        "or decoder self-attention (each output token over the ones before it)")
    p.add_argument("--layer", type=int, help="layer to plot for multi-layer models (default: the last)")
    p.add_argument("--head", type=int, help="head to plot for multi-head models (default: mean over heads)")
    p.set_defaults(func=_cmd_translate)

    p = sub.add_parser("caption", help="caption image files (prints IMAGE<TAB>caption)", epilog=_examples(
        ("attnrepro caption RUN_DIR dog.jpg cat.png --beam 3", "one line per image"),
        ("attnrepro caption RUN_DIR dog.jpg --plot-attention dog-attention.png", "and where each word looked")))
    p.add_argument("checkpoint", type=Path, help="a .ckpt file or a run directory")
    p.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="image files to caption (JPEG, PNG...)")
    p.add_argument("--beam", type=_positive, help=beam_help)
    p.add_argument("--plot-attention", type=Path, metavar="FILE.png",
                   help="per-word attention over the image (Xu et al. Figs. 2-3); FILE-2.png... for later images")
    p.set_defaults(func=_cmd_caption)
    _explore_parser(sub)


def _explore_parser(sub) -> None:
    p = sub.add_parser("explore", help="a local web page: type a sentence or pick an image, see the outputs and the "
                                       "attention of each run side by side", epilog=_examples(
        ("attnrepro explore runs/reproduce-quick", "every run of `make reproduce`, side by side"),
        ("attnrepro explore RUN_DIR_A RUN_DIR_B", "two runs, e.g. RNNsearch beside RNNencdec"),
        ("attnrepro explore RUN_DIR --port 9000", "then open http://127.0.0.1:9000/")))
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                   help="run directories, .ckpt files, or folders holding runs (a reproduce's --out)")
    p.add_argument("--port", type=int, default=8008, help="the port to listen on (default: 8008)")
    p.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on (default: 127.0.0.1, this machine only; the page has no login)")
    p.add_argument("--device", default="auto", help="where models decode: auto (the GPU if there is one), cpu, cuda")
    p.set_defaults(func=_cmd_explore)


def _detach_option(p) -> None:
    p.add_argument("--detach", action="store_true",
                   help="on Ctrl-C or SIGTERM leave the local runs training instead of stopping them (a re-run of "
                        "the plan watches them; SLURM jobs are always left to the cluster)")


def _sweep_parsers(sub, preset_help: str) -> None:
    """The commands of many runs: sweep, report, reproduce."""
    p = sub.add_parser("sweep", help="run a plan of many runs (papers x baselines x seeds x data) with submitit",
                       description=SWEEP_DESCRIPTION, epilog=_examples(
                           ("attnrepro sweep plans/seeds.yaml --dry-run", "the runs of the plan; none started"),
                           ("attnrepro sweep plans/seeds.yaml --slots 2", "two runs at once on a CPU machine"),
                           ("attnrepro sweep plans/seeds.yaml --executor slurm", "one sbatch job per run")))
    p.add_argument("plan", type=Path, help="the plan, a YAML file (see above)")
    p.add_argument("--executor", choices=["local", "slurm", "debug"], default="local",
                   help="local: this machine's GPUs (or --slots CPU processes); slurm: sbatch jobs; debug: in-process")
    p.add_argument("--slots", type=_positive, help="runs at once on a machine without GPUs (default: 1)")
    p.add_argument("--runs-per-gpu", type=_positive, default=1, metavar="N",
                   help="local executor: pack up to N small runs onto each GPU at once (default: 1)")
    _detach_option(p)
    p.add_argument("--slurm-settings", type=Path, metavar="FILE",
                   help="partition, account, time... (default: $ATTNREPRO_SLURM_SETTINGS, else "
                        "~/.config/attnrepro/slurm.yaml)")
    p.add_argument("--dry-run", action="store_true", help="show the runs (and the sbatch script) without starting any")
    p.set_defaults(func=_cmd_sweep)
    _report_parser(sub)
    _reproduce_parser(sub, preset_help)


def _report_parser(sub) -> None:
    p = sub.add_parser("report", help="papers vs baselines: CIs over seeds, paired tests, verdicts, figures",
                       epilog=_examples(
                           ("attnrepro report runs/sweeps/seeds --out reports/seeds", "a sweep's runs"),
                           ("attnrepro report runs/reproduce-quick --no-tests", "a reproduce's, without bootstrap")))
    p.add_argument("targets", type=Path, nargs="+", metavar="RUN_DIR_OR_SWEEP",
                   help="run directories, or folders holding them (a sweep's out, a reproduce's --out)")
    p.add_argument("--out", type=Path, help="output folder (default: reports/report)")
    p.add_argument("--no-tests", action="store_true", help="skip the paired bootstrap tests (faster)")
    p.set_defaults(func=_cmd_report)


def _reproduce_parser(sub, preset_help: str) -> None:
    p = sub.add_parser("reproduce", help="train every paper and its fixed-vector baseline and compare them",
                       epilog=_examples(
                           ("attnrepro reproduce --dry-run", "which paper model meets which baseline"),
                           ("attnrepro reproduce", "every pair, quick preset (~15 min, 2 cores)"),
                           ("attnrepro reproduce --only bahdanau2014 --seeds 3", "one pair, three seeds each"),
                           ("attnrepro reproduce --preset gpu --runs-per-gpu 5", "on GPUs, five runs per GPU"),
                           ("attnrepro reproduce --preset paper --preset paper_big --devices 8", "two table rows, "
                            "8 GPUs per run"),
                           ("attnrepro reproduce --rehearse --devices 2", "every paper preset end to end in miniature "
                            "first (~9 min, 2 cores)")))
    p.add_argument("--preset", action=_Presets, default=DEFAULT_PRESET,
                   help=preset_help + ". Repeat it for several rows of the papers' tables, e.g. --preset paper "
                                      "--preset paper_big (whole tables: plans/paper-*.yaml); a paper model without "
                                      "a preset is left out of that row (one named by --only needs one of them)")
    p.add_argument("--out", type=Path,
                   help="output folder (default: runs/reproduce-PRESET; several presets: runs/reproduce-P1+P2; "
                        "--rehearse: runs/rehearsal)")
    p.add_argument("--seed", type=int, default=1, help="the first seed (default: 1)")
    p.add_argument("--seeds", type=_positive, default=1, help="seeds per model, from --seed on (CIs need 2 or more)")
    p.add_argument("--executor", choices=["local", "slurm", "debug"], default="local",
                   help="as for sweep: local, slurm or debug (default: local)")
    p.add_argument("--slots", type=_positive, help="runs at once without GPUs (default: 1)")
    p.add_argument("--runs-per-gpu", type=_positive, default=1, metavar="N",
                   help="local executor: pack up to N small runs onto each GPU at once (the gpu preset: 5)")
    p.add_argument("--devices", type=_positive, default=1, metavar="N",
                   help="GPUs per run (DDP; without GPUs: processes), written into every run of the plan (default: 1; "
                        "the papers' Transformer rows: 8)")
    p.add_argument("--nodes", type=_positive, default=1, metavar="M",
                   help="nodes per run, each with --devices GPUs: multi-node DDP, --executor slurm only (default: 1)")
    _detach_option(p)
    p.add_argument("--no-report", action="store_true", help="skip the Markdown/HTML report")
    p.add_argument("--dry-run", action="store_true",
                   help="print each paper model and the baseline preset it is paired with (same data), and the runs' "
                        "devices; run nothing")
    p.add_argument("--rehearse", action="store_true",
                   help="before the real thing: run every run of the paper presets given (default: all of them) "
                        "through its whole path at miniature scale (local WMT14 shards, DDP on --devices, a kill and "
                        "resume, averaging, scoring, the verdict); minutes, not days. Output: runs/rehearsal")
    p.add_argument("--probe-steps", type=int, metavar="N",
                   help="with --rehearse: train each full-size preset N steps to measure its step time and project "
                        "its device-hours (default: 10 where there is a GPU, else 0)")
    p.add_argument("--only", action="append", metavar="PAPER_MODEL",
                   help="only this paper model and its baseline, e.g. --only bahdanau2014 (repeatable; default: all)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key of every run, e.g. --set train.max_minutes=5 (repeatable)")
    p.add_argument("--wandb", choices=["offline", "online", "disabled"],
                   help="W&B mode (default: $WANDB_MODE, else offline)")
    p.add_argument("--json", action="store_true",
                   help="print the results (with --dry-run: the pairs and the plan) as JSON; tables and progress go "
                        "to stderr")
    p.set_defaults(func=_cmd_reproduce)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="attnrepro", description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_Version, help="print the version (and git commit) and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="the registered reproductions, their baselines, presets and datasets",
                       epilog=_examples(("attnrepro list", "a table of the reproductions"),
                                        ("attnrepro list --json", "the same as JSON, for scripts")))
    p.add_argument("--json", action="store_true", help="print the registry as JSON (for scripts)")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("config", help="every config key: its type, default and meaning (docs/config.md)",
                       epilog=_examples(("attnrepro config --list", "every config class's keys"),
                                        ("attnrepro config --list bahdanau2014", "only RNNsearch's config"),
                                        ("attnrepro config --list --json", "the keys as JSON")))
    p.add_argument("name", nargs="?", help="only this reproduction's config (default: every config class)")
    p.add_argument("--list", action="store_true", help="list the keys, with type, default and meaning")
    p.add_argument("--json", action="store_true", help="print the keys as JSON (for scripts)")
    p.set_defaults(func=_cmd_config)

    preset_help = _preset_help()
    _train_parser(sub, preset_help)
    _model_parsers(sub)
    _sweep_parsers(sub, preset_help)
    _submit_parser(sub)
    _leaderboard_parser(sub)
    return parser


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


# The file-system errors a user fixes (a read-only or full disk, a folder they may not write), not bugs.
FILE_SYSTEM_ERRORS = {errno.EROFS: "choose a writable place",
                      errno.EACCES: "check its permissions or choose another place",
                      errno.EPERM: "check its permissions or choose another place",
                      errno.ENOSPC: "free some space or choose another place",
                      errno.EDQUOT: "free some space or choose another place"}


def _file_system_error(err: OSError) -> str:
    """One line for an OSError of FILE_SYSTEM_ERRORS: the path, the reason, and what to do about it."""
    from reproductions.common.data.sources import CACHE_ENV, cache_root

    path = None if err.filename is None else Path(os.fsdecode(err.filename))
    if path is not None and path.absolute().is_relative_to(cache_root().absolute()):
        elsewhere = f"${CACHE_ENV} moves the download cache"
    else:
        elsewhere = "the command's --out or --run-dir, or a copy of the run directory"
    reason = err.strerror or os.strerror(err.errno)
    return f"{'' if path is None else f'{path}: '}{reason}; {FILE_SYSTEM_ERRORS[err.errno]} ({elsewhere})"


def main(argv: list[str] | None = None) -> int:
    from . import quiet_known_noise

    quiet_known_noise()
    try:
        args = build_parser().parse_args(argv)
        try:
            args.func(args)
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        except AttnreproError as err:
            print(f"attnrepro: error: {_one_line(err)}", file=sys.stderr)
            return 2
        except OSError as err:
            if err.errno not in FILE_SYSTEM_ERRORS:
                raise
            print(f"attnrepro: error: {_one_line(_file_system_error(err))}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("attnrepro: interrupted", file=sys.stderr)
            return 130
    except BrokenPipeError:
        # The reader of stdout has gone (`attnrepro list | head -3`): stop quietly, with the status a shell gives
        # any command that SIGPIPE ends (128 + 13), so that a pipeline under `set -o pipefail` still sees that
        # the output was cut. stdout now points at devnull, or Python's own flush at exit would complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 0


if __name__ == "__main__":
    sys.exit(main())
