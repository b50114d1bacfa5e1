"""Budgets in work: a run of a preset stops on steps or epochs, so the same seed gives the same numbers on an idle
or a busy machine; the opt-in time cap is recorded and flagged; a run whose loss does not fall is flagged."""

from __future__ import annotations

import json
import multiprocessing
import os
import time

import pytest
import yaml
from test_cli import attnrepro

from harness.report import build_report, run_flags
from reproductions import registry

pytestmark = pytest.mark.slow

PRESETS_BELOW_PAPER = ("tiny", "quick", "cpu", "gpu")


def _spin(stop_at: float) -> None:
    while time.time() < stop_at:
        pass


def _train(run_dir, *extra: str):
    result = attnrepro("train", "bahdanau2014", "--preset", "tiny", "--seed", "3", "--run-dir", str(run_dir), *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((run_dir / "metrics.json").read_text())


def test_every_preset_below_paper_stops_on_work_never_on_minutes():
    for repro in registry.REPRODUCTIONS.values():
        for preset in (p for p in repro.presets() if p in PRESETS_BELOW_PAPER):
            t = repro.load_config(preset).train
            assert t.max_minutes is None, f"{repro.name} {preset}: train.max_minutes={t.max_minutes}"
            assert t.checkpoint_every_minutes is None and t.resume_every_minutes is None, (repro.name, preset)
            if preset != "tiny":
                assert t.max_steps > 0, f"{repro.name} {preset} has no step budget"
                # the last step is validated, so best.ckpt can hold the final weights (not those of the last
                # epoch end before a budget that stops mid-epoch)
                assert t.val_every_n_batches and t.max_steps % t.val_every_n_batches == 0, (repro.name, preset)


def test_a_baseline_and_its_paper_model_make_the_same_updates():
    for repro in registry.REPRODUCTIONS.values():
        if not repro.presets_from:
            continue
        paper = registry.get(repro.presets_from)
        for preset in (p for p in repro.presets() if p in PRESETS_BELOW_PAPER):
            mine, theirs = repro.load_config(preset), paper.load_config(preset)
            assert (mine.train.max_steps, mine.train.max_epochs) == (theirs.train.max_steps, theirs.train.max_epochs)
            assert mine.data == theirs.data  # the same batches: the same steps are the same tokens


def test_the_same_seed_gives_the_same_numbers_on_a_busy_machine(data_root, tmp_path):
    # as the presets below `paper` run: a budget of steps that ends mid-epoch, in the `auto` precision (bf16-mixed
    # where the CPU has AVX512-BF16), validated on the budget's last step
    work = ("--set", "train.precision=auto", "--set", "train.max_epochs=5", "--set", "train.max_steps=8",
            "--set", "train.val_every_n_batches=4")
    idle = _train(tmp_path / "idle", *work)
    spinners = [multiprocessing.Process(target=_spin, args=(time.time() + 300,), daemon=True)
                for _ in range(os.cpu_count() or 2)]
    for spinner in spinners:  # a busy-loop on every core for the whole second run
        spinner.start()
    try:
        busy = _train(tmp_path / "busy", *work)
    finally:
        for spinner in spinners:
            spinner.terminate()
    assert busy["splits"] == idle["splits"]
    for key in ("steps", "epochs_completed", "target_tokens", "stopped_by", "train_loss"):
        assert busy["training"][key] == idle["training"][key], key
    assert idle["training"]["stopped_by"] == "steps" and idle["training"]["steps"] == 8


def test_the_opt_in_time_cap_is_recorded_and_flagged(data_root, tmp_path):
    metrics = _train(tmp_path / "capped", "--set", "train.max_minutes=0.0001", "--set", "train.max_epochs=50",
                     "--no-evaluate")
    training = metrics["training"]
    assert training["stopped_by"] == "time" and training["budget"]["max_minutes"] == 0.0001
    flags = run_flags(training)
    assert any("time cap" in f and f"step {training['steps']}" in f for f in flags), flags


def test_a_quick_run_whose_loss_does_not_fall_is_flagged_by_the_report(data_root, tmp_path):
    run_dir = tmp_path / "lr0"
    result = attnrepro("train", "bahdanau2014", "--preset", "quick", "--run-dir", str(run_dir),
                       "--set", "optim.lr=0", "--set", "train.max_steps=40", "--set", "train.log_every_n_steps=2",
                       "--set", "train.val_every_n_batches=20",
                       "--set", "data.train_limit=400", "--set", "data.eval_limit=20", "--set", "decode.beam=1")
    assert result.returncode == 0, result.stderr[-3000:]
    report = build_report([run_dir], tmp_path / "report", with_tests=False)
    flagged = [c["why"] for c in report["checks"] if c["what"] == str(run_dir)]
    assert any("training loss did not fall" in why for why in flagged), report["checks"]
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "check this run" in markdown and "training loss did not fall" in markdown
    training = json.loads((run_dir / "metrics.json").read_text())["training"]
    assert training["stopped_by"] == "steps" and training["steps"] == 40
    import csv

    with open(run_dir / "logs" / "metrics.csv", newline="") as fh:
        validated = [int(r["step"]) for r in csv.DictReader(fh) if r.get("val/loss")]
    assert validated[-1] == 39  # validated on the budget's last step (the preset's val_every_n_batches)
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["max_steps"] == 40


def test_a_sound_run_and_a_short_one():
    sound = {"stopped_by": "steps", "steps": 700, "budget": {"max_steps": 700},
             "train_loss": {"first": 6.0, "last": 3.0}}
    assert run_flags(sound) == []
    short = {**sound, "stopped_by": "interrupted", "steps": 126}
    assert run_flags(short) == ["stopped at step 126 of 700 before its budget"]


def test_the_main_job_record_says_whether_two_runs_of_it_are_identical():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("reproduce_benchmark",
                                                  Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    row = {"scores": {"test": {"bleu": 20.0}}, "steps": 700, "stopped_by": "steps", "target_tokens": 9000,
           "minutes": 5.0}
    same = bench.compare({"a": row}, {"a": {**row, "minutes": 11.0}, "b": row})  # b: not run this time (--only)
    assert same == {"identical": True, "compared": ["a"], "differences": []}
    moved = bench.compare({"a": row}, {"a": {**row, "scores": {"test": {"bleu": 19.9}}}})
    assert moved == {"identical": False, "compared": ["a"], "differences": ["a: scores"]}
    assert not bench.compare({"a": row}, {})["identical"]


def test_the_benchmark_tables_mark_a_run_stopped_by_the_time_cap():
    from harness.benchmark import stopped_by

    capped = {"stopped_by": "time", "steps": 126, "budget": {"max_steps": 700}}
    assert stopped_by(capped) == "time (check this run)"
    assert stopped_by({"stopped_by": "steps", "steps": 700, "budget": {"max_steps": 700}}) == "steps"


def test_the_thread_count_is_recorded_and_what_it_changes_is_known(data_root, tmp_path):
    """The same seed on 1 and on 2 CPU threads (OMP_NUM_THREADS): each run records its thread count, and the two
    agree on everything that counts work; docs/reproducibility.md says what differs."""
    work = ("--set", "train.precision=32-true", "--set", "train.max_epochs=5", "--set", "train.max_steps=8",
            "--set", "train.val_every_n_batches=4")
    runs = {}
    for threads in (1, 2):
        result = attnrepro("train", "bahdanau2014", "--preset", "tiny", "--seed", "3", "--run-dir",
                           str(tmp_path / f"t{threads}"), *work, env={"OMP_NUM_THREADS": str(threads)})
        assert result.returncode == 0, result.stderr[-3000:]
        runs[threads] = json.loads((tmp_path / f"t{threads}" / "metrics.json").read_text())
    assert [runs[t]["training"]["torch_threads"] for t in (1, 2)] == [1, 2]
    for key in ("steps", "epochs_completed", "target_tokens", "stopped_by"):
        assert runs[1]["training"][key] == runs[2]["training"][key], key
