"""Every table the project prints goes through harness/tables.py, which never cuts a name or a number: no other
module builds a rich Table, and a benchmark's table printed into a narrow pipe or log keeps every value whole
(rich's own Table shortens every cell of a table wider than the console: `│ vas… │ tes… │ 38.… │`)."""

from __future__ import annotations

import importlib.util
import io
import re
from pathlib import Path
from types import SimpleNamespace

from rich.console import Console

from harness import sweep, tables

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("harness", "reproductions", "leaderboards", "benchmarks")
RICH_TABLE = re.compile(r"\brich\.table\b|from\s+rich\s+import\s+[^\n]*\btable\b|(?<![\w.])Table\(")


def _load(script: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{script}", REPO / "benchmarks" / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _narrow_log(width: int = 40) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    console = Console(file=buf, width=width)
    assert not console.is_terminal
    return console, buf


def test_no_module_but_harness_tables_builds_a_rich_table():
    offenders = []
    for folder in FOLDERS:
        for path in sorted((REPO / folder).rglob("*.py")):
            relpath = path.relative_to(REPO).as_posix()
            if relpath == "harness/tables.py":
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if RICH_TABLE.search(line):
                    offenders.append(f"{relpath}:{number}: {line.strip()}")
    assert not offenders, "print tables through harness/tables.py (print_table, print_records, live_table):\n" + \
        "\n".join(offenders)


def test_the_multi30k_benchmark_table_keeps_names_and_numbers_whole_in_a_narrow_log():
    runs = {name: {"training": {"wall_time_s": 1683.0, "steps": 3300, "target_tokens_per_s": 2871.4,
                                "training_flops": 1.234e15, "parameters": 12_345_678},
                   "splits": {"test_2016_flickr": {"bleu": bleu, "chrf": 61.234, "tok_bleu": 39.871,
                                                   "lc_tok_bleu": None}}}
            for name, bleu in (("vaswani2017", 38.39), ("bahdanau2014", 36.123), ("cho2014", 21.5))}
    console, buf = _narrow_log()
    _load("multi30k").print_summary(console, runs)
    out = buf.getvalue()
    assert "…" not in out
    for whole in ("vaswani2017", "bahdanau2014", "cho2014", "test_2016_flickr", "38.39", "36.12", "21.50", "61.23",
                  "39.87", "28.1", "3300", "2871", "1.23e+15", "12.3M", "lc tok BLEU"):
        assert whole in out, whole


def test_the_flickr8k_benchmark_table_keeps_names_and_numbers_whole_in_a_narrow_log():
    flickr8k = _load("flickr8k")
    scores = {metric: 12.3456 for metric in flickr8k.METRICS} | {"bleu4": 20.1234}
    runs = {name: {"training": {"wall_time_s": 600.0, "epochs_completed": 7}, "splits": {"test": scores}}
            for name in ("xu2015", "xu2015-hard", "vinyals2015")}
    console, buf = _narrow_log()
    flickr8k.print_summary(console, runs)
    out = buf.getvalue()
    assert "…" not in out
    for whole in ("xu2015-hard", "vinyals2015", "20.12", "12.35", "B-4 no BP"):
        assert whole in out, whole


def test_the_sweep_table_keeps_names_whole_printed_or_live():
    plan = SimpleNamespace(name="grid")  # the table reads only the plan's name
    label = "vaswani2017-paper-en-de-seed3"
    status = {label: {"state": "failed", "attempts": 2, "error": "RuntimeError: [Errno 28] no space left",
                      "run_dir": "/nonexistent"}}
    for width in (40, 120):
        console, buf = _narrow_log(width)
        tables.print_table(console, *sweep._table(plan, status))
        out = buf.getvalue()
        assert "…" not in out and label in out and "[Errno" in out and "failed" in out
    console, buf = _narrow_log(120)
    console.print(tables.live_table(*sweep._table(plan, status)))  # what rich's Live draws in a terminal
    assert label in buf.getvalue() and "…" not in buf.getvalue()
