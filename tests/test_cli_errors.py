"""A CLI that never surprises: each command's bad inputs end with exit status 2 and one line on stderr (docs/cli.md),
a closed pipe ends quietly with 141, and the help, --version, --json and tables say everything without cutting it.
Nothing here trains: every case fails, or prints, before a model is built."""

from __future__ import annotations

import argparse
import errno
import io
import json
import logging
import os
import subprocess
import sys
import warnings
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from harness import cli, quiet_known_noise
from harness.tables import Col, print_records, print_table
from reproductions import registry

REPO = Path(__file__).resolve().parents[1]
MISSING = "/nonexistent/attnrepro-test"


def attnrepro(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "COLUMNS": "80"}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


# Plans with one mistake each, in place of their placeholder in BAD_INPUTS
PLAN_MISTAKES = {"PLAN": {"overides": ["train.max_epochs=1"]}, "PLAN_PRESET": {"presets": ["huge"]},
                 "PLAN_NAME": {"reproductions": ["cho2041"]}}


def _bad_plan(folder: Path, mistake: str) -> str:
    plan = folder / "plan.yaml"
    group = {"reproductions": ["cho2014"], "presets": ["tiny"], "seeds": [1], **PLAN_MISTAKES[mistake]}
    plan.write_text(yaml.safe_dump({"name": "p", "runs": [group]}))
    return str(plan)


# (arguments, a fragment of the one error line); TMP stands for an empty folder, PLAN... for a plan with a mistake
BAD_INPUTS = {
    "no command": ((), "required: COMMAND"),
    "unknown command": (("trian",), "invalid choice: 'trian'"),
    "list: unknown option": (("list", "--jsn"), "unrecognized arguments: --jsn"),
    "train: no name": (("train",), "needs a reproduction NAME"),
    "train: unknown name": (("train", "bahdanau2041"), "Did you mean 'bahdanau2014'"),
    "train: unknown preset": (("train", "cho2014", "--preset", "huge"), "cho2014 has no preset 'huge'"),
    "train: unknown key": (("train", "cho2014", "--set", "model.hiden=3"), "unknown config key 'model.hiden'"),
    "train: bad value": (("train", "cho2014", "--set", "train.max_epochs=abc"), "'train.max_epochs' must be int"),
    "train: bad seed": (("train", "cho2014", "--seed", "x"), "argument --seed: invalid int value: 'x'"),
    "train: bad nodes": (("train", "cho2014", "--nodes", "0"), "argument --nodes: must be a whole number >= 1"),
    "train: missing config": (("train", "cho2014", "--config", MISSING), f"config file {MISSING} does not exist"),
    "train: resume with a name": (("train", "cho2014", "--resume", "TMP"), "leave out NAME"),
    "train: resume no run": (("train", "--resume", "TMP"), "is not a run directory"),
    "evaluate: missing path": (("evaluate", MISSING), f"{MISSING} does not exist"),
    "evaluate: bad beam": (("evaluate", "TMP", "--beam", "0"), "argument --beam: must be a whole number >= 1"),
    "translate: missing checkpoint": (("translate", MISSING), f"{MISSING} does not exist"),
    "caption: missing checkpoint": (("caption", MISSING, "dog.jpg"), f"{MISSING} does not exist"),
    "sweep: missing plan": (("sweep", MISSING), f"{MISSING} does not exist; give a plan YAML file"),
    "sweep: unknown key": (("sweep", "PLAN", "--dry-run"), "unknown config key 'runs[0].overides'"),
    "sweep: bad slots": (("sweep", "PLAN", "--slots", "-1"), "argument --slots: must be a whole number >= 1"),
    "sweep: unknown preset": (("sweep", "PLAN_PRESET"), "plan.yaml: cho2014 has no preset 'huge'"),
    "sweep: unknown name": (("sweep", "PLAN_NAME", "--dry-run"), "plan.yaml: unknown reproduction 'cho2041'"),
    "report: missing folder": (("report", MISSING), f"{MISSING} does not exist"),
    "reproduce: unknown preset": (("reproduce", "--preset", "bogus"), "no paper model has a preset 'bogus'"),
    "reproduce: near preset": (("reproduce", "--preset", "qiuck"), "Did you mean 'quick'?"),
    "reproduce: unknown name": (("reproduce", "--only", "bogus"), "unknown reproduction 'bogus'"),
    "reproduce: a baseline": (("reproduce", "--only", "cho2014"), "--only cho2014: that is a baseline"),
    "reproduce: preset of another": (("reproduce", "--only", "bahdanau2014", "--preset", "paper_coco"),
                                     "bahdanau2014 has no preset 'paper_coco'"),
    "reproduce: unknown key": (("reproduce", "--preset", "tiny", "--set", "model.hiden=3", "--dry-run"),
                               "unknown config key 'model.hiden'"),
    "reproduce: bad seeds": (("reproduce", "--seeds", "0"), "argument --seeds: must be a whole number >= 1"),
    "submit: missing run": (("submit", MISSING, "--board", "b"), f"{MISSING} does not exist"),
    "leaderboard: bad database URL": (("leaderboard", "user", "add", "bob", "--db", "nonsense://x"),
                                      "database URL 'nonsense://x'"),
    "leaderboard: database file": (("leaderboard", "user", "add", "bob", "--db", f"sqlite:///{MISSING}/x.db"),
                                   "cannot use the database"),
    "leaderboard: missing boards": (("leaderboard", "boards", "--boards", MISSING), "holds no board definitions"),
    "leaderboard: unknown action": (("leaderboard", "serv"), "invalid choice: 'serv'"),
}


@pytest.mark.parametrize("args, fragment", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_a_bad_input_is_one_line_and_status_2(args, fragment, tmp_path):
    args = [str(tmp_path) if a == "TMP" else _bad_plan(tmp_path, a) if a in PLAN_MISTAKES else a for a in args]
    result = attnrepro(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("attnrepro: error: ") and fragment in lines[0], lines[0]
    assert result.stdout == ""


# (arguments, the command's writer that fails, the path it fails on; OUT, TMP: folders; CACHE: $ATTNREPRO_CACHE)
DISK_ERRORS = {
    "report --out": (("report", "TMP", "--out", "OUT"), "harness.report.build_report", "OUT/report.md"),
    "evaluate's metrics.json": (("evaluate", "TMP", "--json"), "harness.evaluate.evaluate", "TMP/metrics.json"),
    "reproduce --out": (("reproduce", "--preset", "tiny", "--only", "xu2015", "--out", "OUT"),
                        "harness.reproduce.reproduce", "OUT/plan.yaml"),
    "the download cache": (("reproduce", "--preset", "tiny", "--only", "bahdanau2014"), "harness.reproduce.reproduce",
                           "CACHE/data/multi30k/task1/raw/train.en.gz"),
}


FULL_OR_FORBIDDEN = [(errno.EROFS, "Read-only file system"), (errno.EACCES, "Permission denied"),
                     (errno.ENOSPC, "No space left on device"), (errno.EDQUOT, "Disk quota exceeded")]


@pytest.mark.parametrize("code, reason", FULL_OR_FORBIDDEN)
@pytest.mark.parametrize("args, writer, path", DISK_ERRORS.values(), ids=DISK_ERRORS.keys())
def test_a_disk_that_cannot_be_written_is_one_line_and_status_2(args, writer, path, code, reason, tmp_path,
                                                                  monkeypatch, capsys):
    folders = {"TMP": tmp_path / "run", "OUT": tmp_path / "out", "CACHE": tmp_path / "cache"}
    folders["TMP"].mkdir()
    monkeypatch.setenv("ATTNREPRO_CACHE", str(folders["CACHE"]))
    for name, folder in folders.items():
        path = path.replace(name, str(folder))
    args = [str(folders[a]) if a in folders else a for a in args]

    def fail(*args, **kwargs):
        raise OSError(code, reason, path)

    monkeypatch.setattr(writer, fail)
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"attnrepro: error: {path}: {reason}; "), err
    assert ("$ATTNREPRO_CACHE" in err) == path.startswith(str(folders["CACHE"])), err


def test_other_os_errors_stay_bugs_with_a_traceback(monkeypatch, tmp_path):
    def fail(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error", str(tmp_path / "report.md"))

    monkeypatch.setattr("harness.report.build_report", fail)
    with pytest.raises(OSError, match="Input/output error"):
        cli.main(["report", str(tmp_path)])


CLOSED_PIPES = [("list",), ("list", "--json"), ("config", "--list"), ("config", "--list", "--json"),
                ("leaderboard", "boards", "--json"), ("--version",)]


@pytest.mark.parametrize("args", CLOSED_PIPES)
def test_a_closed_pipe_ends_quietly_with_141(args):
    process = subprocess.Popen([sys.executable, "-m", "harness.cli", *args], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before the first write, as `| head` is after its lines
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141, stderr
    assert stderr == ""


@pytest.mark.parametrize("args", [("config", "--list"), ("list", "--json")])
def test_head_1_reads_a_line_and_the_command_ends_quietly(args):
    """`attnrepro config --list | head -1`: the reader goes after one line, at any point of the output; all of
    it may already sit in the pipe's buffer (status 0) or not (141)."""
    process = subprocess.Popen([sys.executable, "-m", "harness.cli", *args], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "80"})
    assert process.stdout.readline()
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) in (0, 141), stderr
    assert stderr == ""


def test_help_opens_with_what_it_is_and_shows_examples():
    out = attnrepro("--help")
    assert out.returncode == 0
    description = out.stdout.split("\n\n")[1]
    assert description.startswith("Reproductions of the papers that made attention mainstream")
    assert "examples:" in out.stdout and "attnrepro reproduce" in out.stdout and "docs/cli.md" in out.stdout
    sweep = attnrepro("sweep", "--help").stdout
    assert "A plan is a YAML file" in sweep and "README.md" in sweep and "harness/sweep.py" not in sweep


def test_every_command_s_help_ends_with_examples():
    def helps(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield " ".join([*path, name]), sub.format_help()
                    yield from helps(sub, [*path, name])

    found = dict(helps(cli.build_parser(), ["attnrepro"]))
    assert {"attnrepro train", "attnrepro leaderboard token revoke"} <= set(found)
    for command, text in found.items():
        examples = text.rstrip().split("\nexamples:\n")
        assert len(examples) == 2, f"`{command} --help` ends with no examples"
        lines = [line.strip() for line in examples[1].splitlines()]
        assert any(line.startswith(command + " ") for line in lines), (command, lines)


def test_every_preset_is_listed_in_the_help():
    out = attnrepro("train", "--help").stdout
    words = set(out.replace(",", " ").replace(".", " ").split())
    assert {p for r in registry.REPRODUCTIONS.values() for p in r.presets()} <= words


def test_every_argument_has_help():
    def undocumented(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from undocumented(sub, [*path, name])
            elif not action.help:
                yield " ".join([*path, *(action.option_strings or [action.dest])])

    assert list(undocumented(cli.build_parser(), ["attnrepro"])) == []


def test_version_names_the_package_and_loads_no_torch():
    out = attnrepro("--version")
    assert out.returncode == 0 and out.stdout.startswith(f"attnrepro {metadata.version('attnrepro')}")
    code = "import sys; from harness.cli import version_text; version_text(); print('torch' in sys.modules)"
    check = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert check.stdout.strip() == "False"


def test_train_defaults_to_the_preset_reproduce_defaults_to(capsys):
    assert cli.build_parser().parse_args(["reproduce"]).preset == cli.DEFAULT_PRESET == "quick"
    assert cli.main(["train", "cho2014", "--print-config"]) == 0
    default = capsys.readouterr().out
    assert cli.main(["train", "cho2014", "--preset", "quick", "--print-config"]) == 0
    assert capsys.readouterr().out == default


def test_print_config_and_a_config_file_round_trip(capsys, tmp_path):
    assert cli.main(["train", "xu2015", "--preset", "tiny", "--set", "train.max_epochs=7", "--print-config"]) == 0
    printed = capsys.readouterr().out
    cfg = yaml.safe_load(printed)
    assert cfg["train"]["max_epochs"] == 7 and cfg["model"]["context"] == "soft"
    path = tmp_path / "config.yaml"
    path.write_text(printed)
    assert cli.main(["train", "xu2015", "--config", str(path), "--print-config"]) == 0
    assert capsys.readouterr().out == printed  # the file is the whole config: no key of the quick preset is left
    # a baseline trained from its paper model's file stays a fixed-vector model; --set applies on top
    assert cli.main(["train", "vinyals2015", "--config", str(path), "--set", "train.max_epochs=2",
                     "--print-config"]) == 0
    again = yaml.safe_load(capsys.readouterr().out)
    assert again["model"]["context"] == "fixed" and again["train"]["max_epochs"] == 2
    assert {k: v for k, v in again.items() if k not in ("model", "train")} == {
        k: v for k, v in cfg.items() if k not in ("model", "train")}


def test_train_from_a_config_file_trains_exactly_that_config(tmp_path, monkeypatch):
    """--config FILE: the run's spec holds the file's config itself (a list, a string that reads as a number, a
    float where the preset has none), with the preset only recorded."""
    import harness.train
    from reproductions.common.config import to_dict

    repro = registry.get("bahdanau2014")
    wanted = repro.load_config("tiny", ["data.pair=en-fr", "optim.betas=[0.8, 0.9]", "data.hub_revision='1e3'",
                                        "train.max_minutes=2.5"])
    assert wanted.data.hub_revision == "1e3"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(to_dict(wanted), sort_keys=False))
    specs = []
    monkeypatch.setattr(harness.train, "train_spec", lambda spec, launch: specs.append(spec) or spec.run_dir)
    assert cli.main(["train", "bahdanau2014", "--preset", "paper", "--config", str(path), "--run-dir",
                     str(tmp_path / "run")]) == 0
    assert specs[0].cfg == wanted and specs[0].preset == "paper" and specs[0].run_dir == tmp_path / "run"


def test_json_of_reproduce_and_boards():
    pairs = attnrepro("reproduce", "--preset", "tiny", "--dry-run", "--json")
    assert pairs.returncode == 0, pairs.stderr
    assert {p["paper"] for p in json.loads(pairs.stdout)["pairs"]} == {r.name for r in registry.papers()}
    boards = attnrepro("leaderboard", "boards", "--json")
    assert boards.returncode == 0 and all({"board", "status"} <= set(b) for b in json.loads(boards.stdout))


def test_tables_never_cut_a_name_or_a_number():
    name, number = "a-reproduction-name-longer-than-a-narrow-terminal", "123456.789012"
    words = "free text that wraps between its words, never inside one " * 3
    for width in (20, 40, 80):
        buf = io.StringIO()
        console = Console(file=buf, width=width)
        print_table(console, "t", [Col("name"), Col("score", "number"), Col("notes", "text"), Col("x", optional=True)],
                    [[name, number, words, "dropped"]])
        print_records(console, "records", [{"board": name, "status": words}])
        out = buf.getvalue()
        assert "…" not in out and out.count(name) == 2 and number in out
        cells = {w for line in out.splitlines() for w in line.replace("│", " ").split()}
        assert set(words.split()) <= cells  # every word whole, in both tables
        assert "dropped" not in out and "left out for this" in out


def test_known_third_party_noise_is_silenced_and_nothing_else(caplog):
    with warnings.catch_warnings(record=True) as caught:
        quiet_known_noise()
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1)
        warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else is deprecated"]
    with caplog.at_level(logging.INFO):
        rank_zero = logging.getLogger("pytorch_lightning.utilities.rank_zero")
        rank_zero.info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]")
        rank_zero.info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]
