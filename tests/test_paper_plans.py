"""The papers' whole tables: plans/paper-*.yaml (one plan per paper, devices per row) and `attnrepro reproduce` with
several presets and --devices. Nothing here trains: plans are loaded and dry-run, reproduce is dry-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import cli
from harness.reproduce import preset_data
from harness.sweep import load_plan
from reproductions import paper_results

REPO = Path(__file__).resolve().parents[1]
PLANS = sorted((REPO / "plans").glob("paper-*.yaml"))

# Each plan's rows, as (reproduction, preset), and the GPUs per run of each reproduction in it.
EXPECTED = {
    "paper-bahdanau2014": ({("bahdanau2014", p) for p in ("paper30", "paper")}
                           | {("cho2014", p) for p in ("paper30", "paper")}, {"bahdanau2014": 1, "cho2014": 1}),
    "paper-vaswani2017": ({("vaswani2017", p) for p in ("paper", "paper_big", "paper_enfr", "paper_big_enfr")},
                          {"vaswani2017": 8}),  # §5.2: one machine with 8 GPUs
    "paper-xu2015": ({(m, p) for m in ("xu2015", "xu2015-hard", "vinyals2015")
                      for p in ("paper", "paper_flickr30k", "paper_coco")},
                     {"xu2015": 1, "xu2015-hard": 1, "vinyals2015": 1}),
}


def attnrepro(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def test_every_paper_plan_is_expected():
    assert {p.stem for p in PLANS} == set(EXPECTED)


@pytest.mark.parametrize("path", PLANS, ids=[p.stem for p in PLANS])
def test_a_paper_plan_loads_with_its_rows_and_devices(path):
    rows, devices = EXPECTED[path.stem]
    plan = load_plan(path)
    assert plan.name == path.stem and plan.out == Path("runs/sweeps") / path.stem
    assert {(s.name, s.preset) for s in plan.runs} == rows and len(plan.runs) == len(rows)  # one seed each
    assert all(s.devices == devices[s.name] and s.nodes == 1 for s in plan.runs)


@pytest.mark.slow
@pytest.mark.parametrize("path", PLANS, ids=[p.stem for p in PLANS])
def test_a_paper_plan_dry_runs(path, tmp_path):
    result = attnrepro("sweep", str(path), "--dry-run", cwd=tmp_path)  # its `out` is relative: under tmp_path
    assert result.returncode == 0, result.stderr[-2000:]
    rows, _ = EXPECTED[path.stem]
    for name, preset in rows:
        assert f"{name}-{preset}-seed1" in result.stdout, (name, preset)
    assert "dry run: nothing started" in result.stdout and not any(tmp_path.iterdir())  # nothing written


def test_the_paper_plans_cover_every_published_cell_with_a_preset():
    planned = {(s.name, s.preset) for path in PLANS for s in load_plan(path).runs}
    published = {(cell.model, cell.preset) for cell, _ in paper_results.all_cells() if cell.preset}
    # cho2014 paper_ende is the Transformer's same-pair baseline, not a published row: reproduce pairs it
    assert published <= planned, sorted(published - planned)


@pytest.mark.slow
def test_reproduce_runs_several_presets_each_paper_model_with_its_baseline_on_devices(tmp_path):
    out = tmp_path / "out"
    result = attnrepro("reproduce", "--preset", "paper", "--preset", "paper_big", "--devices", "8", "--dry-run",
                       "--json", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    printed = json.loads(result.stdout)
    pairs = printed["pairs"]
    assert {(p["paper"], p["preset"]) for p in pairs} == {
        ("bahdanau2014", "paper"), ("vaswani2017", "paper"), ("xu2015", "paper"), ("xu2015-hard", "paper"),
        ("vaswani2017", "paper_big")}  # bahdanau2014 and xu2015 have no paper_big: left out of that row
    for p in pairs:  # the pairing of one preset (plan_pairs), row by row
        assert p["baseline"] is not None, p
        assert preset_data(p["baseline"], p["baseline_preset"]) == preset_data(p["paper"], p["preset"]), p
    big = next(p for p in pairs if p["preset"] == "paper_big")
    assert (big["baseline"], big["data"]) == ("cho2014", "wmt14 en-de")

    plan = printed["plan"]
    assert plan["name"] == "reproduce-paper+paper_big" and plan["out"] == str(out)
    runs = [(g["reproductions"][0], g["presets"][0]) for g in plan["runs"]]
    wanted = {(p["paper"], p["preset"]) for p in pairs} | {(p["baseline"], p["baseline_preset"]) for p in pairs}
    assert sorted(runs) == sorted(wanted)  # a baseline shared by two rows (cho2014 paper_ende) once
    assert all(g["devices"] == 8 and g["nodes"] == 1 for g in plan["runs"])
    assert not out.exists()  # a dry run writes nothing

    path = tmp_path / "plan.yaml"  # what reproduce would write is a plan the sweep runs as it is
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    assert all(s.devices == 8 for s in load_plan(path).runs)


def test_preset_repeats_and_its_default_stays_one_preset():
    parser = cli.build_parser()
    assert parser.parse_args(["reproduce"]).preset == cli.DEFAULT_PRESET
    args = parser.parse_args(["reproduce", "--preset", "paper", "--preset", "paper_big", "--devices", "8"])
    assert (args.preset, args.devices, args.nodes) == (["paper", "paper_big"], 8, 1)


@pytest.mark.parametrize("args, fragment", [
    (("--preset", "paper,paper_big"), "Repeat --preset for several: --preset paper --preset paper_big."),
    (("--preset", "paper", "--preset", "bogus"), "no paper model has a preset 'bogus'"),
    (("--only", "bahdanau2014", "--preset", "paper_coco", "--preset", "paper_big"),
     "bahdanau2014 has no preset 'paper_coco' or 'paper_big'"),
    (("--preset", "tiny", "--nodes", "2"), "--nodes 2 needs --executor slurm"),
])
def test_bad_presets_and_nodes_are_one_line(args, fragment, capsys, tmp_path):
    assert cli.main(["reproduce", *args, "--dry-run", "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and fragment in captured.err, captured.err
