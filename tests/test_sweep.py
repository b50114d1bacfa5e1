"""Plans and executors (`attnrepro sweep`), and the report over a sweep (`attnrepro report`)."""

import json

import pytest
import yaml
from test_cli import assert_clean_error, attnrepro

from harness.report import build_report, summary, verdict
from harness.sweep import PlanError, RunSpec, load_plan, render_sbatch, sweep

pytestmark = pytest.mark.slow


def _plan(path, out, runs, retries=1):
    path.write_text(yaml.safe_dump({"name": path.stem, "out": str(out), "retries": retries, "runs": runs}))
    return path


@pytest.fixture(scope="module")
def four_runs(tmp_path_factory, data_root):
    """4 tiny runs (RNNsearch and RNNencdec x 2 seeds) on the local executor with 2 CPU slots."""
    root = tmp_path_factory.mktemp("sweep")
    plan = _plan(root / "four.yaml", root / "out", [
        {"reproductions": ["bahdanau2014", "cho2014"], "presets": ["tiny"], "seeds": [1, 2], "pairs": ["en-de"]}])
    result = attnrepro("sweep", str(plan), "--executor", "local", "--slots", "2", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr[-3000:]
    return plan, root / "out", result


def test_plan_of_four_runs_completes_on_two_slots(four_runs):
    plan, out, result = four_runs
    status = json.loads((out / "sweep.json").read_text())["runs"]
    assert sorted(status) == sorted(f"{n}-tiny-en-de-seed{s}" for n in ("bahdanau2014", "cho2014") for s in (1, 2))
    assert all(v["state"] == "done" and v["attempts"] == 1 for v in status.values())
    for label in status:
        assert json.loads((out / label / "metrics.json").read_text())["splits"]["test_2016_flickr"]["sentences"] == 20
    assert "4 done" in result.stdout


def test_rerunning_a_finished_plan_does_nothing(four_runs):
    plan, out, _ = four_runs
    stamps = {p: p.stat().st_mtime for p in out.glob("*/metrics.json")}
    again = attnrepro("sweep", str(plan), "--slots", "2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.stat().st_mtime for p in out.glob("*/metrics.json")} == stamps


def test_an_injected_failure_is_retried_and_reported_while_the_others_finish(data_root, tmp_path):
    plan = _plan(tmp_path / "faulty.yaml", tmp_path / "out", [
        {"reproductions": ["cho2014"], "presets": ["tiny"], "seeds": [3]},
        {"reproductions": ["cho2014"], "presets": ["tiny"], "seeds": [4], "env": {"ATTNREPRO_INJECT_FAULT": "raise@2"}},
    ], retries=1)
    result = attnrepro("sweep", str(plan), "--slots", "2")
    assert_clean_error(result, "1 of 2 runs failed", "cho2014-tiny-seed4")
    status = json.loads((tmp_path / "out" / "sweep.json").read_text())["runs"]
    assert status["cho2014-tiny-seed3"]["state"] == "done"
    failed = status["cho2014-tiny-seed4"]
    assert failed["state"] == "failed" and failed["attempts"] == 2  # the first try and one retry
    assert "fault injected" in failed["error"]


def test_missing_data_is_one_error_before_any_run_starts(data_root, tmp_path):
    """A run whose data root lacks its files: one line naming the file and what to do, and nothing submitted
    (no job folder, no run directory), instead of the same failure from every run and retry."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    plan = _plan(tmp_path / "nodata.yaml", tmp_path / "out", [
        {"reproductions": ["cho2014"], "presets": ["tiny"], "seeds": [1]},
        {"reproductions": ["xu2015"], "presets": ["tiny"], "seeds": [1], "env": {"ATTNREPRO_DATA": str(empty)}},
    ])
    result = attnrepro("sweep", str(plan), "--slots", "2")
    assert_clean_error(result, f"{empty}/flickr8k/Flickr8k_text/", "not found", "ATTNREPRO_DATA")
    out = tmp_path / "out"
    assert not (out / "submitit").exists() and not list(out.glob("*-seed1"))


def test_debug_executor_runs_a_plan_in_process(data_root, tmp_path):
    plan = _plan(tmp_path / "debug.yaml", tmp_path / "out", [
        {"reproductions": ["cho2014"], "presets": ["tiny"], "seeds": [5], "overrides": ["train.max_epochs=1"]}])
    status = sweep(plan, executor="debug")
    assert status["cho2014-tiny-seed5"]["state"] == "done"


def test_slurm_submission_script(tmp_path):
    settings = {"partition": "gpu", "account": "nlp", "time_min": 600, "qos": "high", "mem_gb": 64}
    spec = RunSpec("vaswani2017", "paper_big", 1, None, [], devices=4, nodes=2,
                   run_dir=tmp_path / "vaswani2017-paper_big-seed1")
    script = render_sbatch(spec, settings, tmp_path / "submitit")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --account=nlp", "#SBATCH --nodes=2",
                 "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4", "#SBATCH --time=600",
                 "#SBATCH --qos=high", "#SBATCH --mem=64GB", "#SBATCH --requeue", "#SBATCH --signal=USR2@120",
                 "#SBATCH --job-name=vaswani2017-paper_big-seed1"):
        assert line in script, line
    assert "srun" in script and "submitit.core._submit" in script


def test_dry_run_shows_the_plan_and_its_sbatch_script(tmp_path):
    plan = _plan(tmp_path / "p.yaml", tmp_path / "out", [
        {"reproductions": ["xu2015", "vinyals2015"], "presets": ["paper"], "seeds": [1, 2, 3], "devices": 2}])
    settings = tmp_path / "slurm.yaml"
    settings.write_text("partition: a100\naccount: lab\n")
    result = attnrepro("sweep", str(plan), "--executor", "slurm", "--dry-run", "--slurm-settings", str(settings),
                       env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "xu2015-paper-seed3" in result.stdout and "#SBATCH --partition=a100" in result.stdout
    assert not (tmp_path / "out" / "xu2015-paper-seed1").exists()  # nothing started


def test_bad_plans_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"runs": [{"reproductions": ["cho2014"], "preset": ["tiny"]}]}))
    with pytest.raises(PlanError, match=r"bad.yaml: unknown config key 'runs\[0\].preset'"):
        load_plan(bad)
    bad.write_text(yaml.safe_dump({"runs": [{"reproductions": ["cho2015"]}]}))
    assert_clean_error(attnrepro("sweep", str(bad)), "cho2015", "Did you mean 'cho2014'")
    bad.write_text(yaml.safe_dump({"runs": [{"reproductions": ["cho2014"], "overrides": ["train.epochs=3"]}]}))
    assert_clean_error(attnrepro("sweep", str(bad)), "train.epochs")
    assert_clean_error(attnrepro("sweep", str(tmp_path / "none.yaml")), "none.yaml does not exist")


def test_summary_and_verdicts():
    s = summary([30.0, 32.0, 34.0])
    assert s["mean"] == 32.0 and s["std"] == 2.0
    assert s["ci95"] == [27.03, 36.97]  # 32 -/+ 4.303 * 2 / sqrt(3)
    assert summary([5.0])["ci95"] is None
    tolerance = {"reproduced": 1.0, "within": 2.5}
    assert verdict(26.0, 26.75, tolerance) == "reproduced"
    assert verdict(25.0, 26.75, tolerance) == "within tolerance"
    assert verdict(20.0, 26.75, tolerance) == "not reproduced"


def test_report_over_a_sweep(four_runs, tmp_path, monkeypatch):
    import harness.report as report

    _, out, _ = four_runs
    from reproductions.paper_results import PaperCell, Tolerance

    real = report.paper_cells()
    assert any(c.value == 26.75 and c.preset == "paper" and c.model == "bahdanau2014" for c, _ in real)
    fake = [(PaperCell(model="bahdanau2014", label="RNNsearch (test cell)", preset="tiny", dataset="multi30k",
                       pair="en-de", split="test_2016_flickr", metric="bleu", convention="sacrebleu", value=0.5,
                       source="a test table"), Tolerance(reproduced=1.0, within=2.5))]
    monkeypatch.setattr(report, "paper_cells", lambda: fake)
    result = build_report([out], tmp_path / "report")
    section = next(s for s in result["sections"] if s["paper"] == "bahdanau2014")
    assert section["seeds"] == [1, 2] and section["baseline"] == "cho2014"
    bleu = next(r for r in section["rows"] if r["metric"] == "BLEU")
    assert bleu["paper"]["value"] == 0.5 and bleu["verdict"] == "reproduced"
    assert bleu["ours"]["n"] == 2 and bleu["ours"]["ci95"] is not None and bleu["baseline"]["n"] == 2
    assert 0 <= bleu["significance"]["max_p_value"] <= 1 and bleu["significance"]["seeds"] == 2
    markdown = (tmp_path / "report" / "report.md").read_text()
    for text in ("| paper |", "baseline (same setting)", "95% CI", "reproduced", "a test table"):
        assert text in markdown, text
    assert "<table>" in (tmp_path / "report" / "report.html").read_text()
    for kind in ("bleu_by_length", "learning_curves", "attention", "cost"):
        assert result["figures"][kind], kind
        for rel in result["figures"][kind]:
            png = (tmp_path / "report" / rel).read_bytes()
            assert png[:4] == b"\x89PNG" and len(png) > 1000, rel


def test_shipped_plans_load():
    from pathlib import Path

    for path in (Path(__file__).resolve().parents[1] / "plans").glob("*.yaml"):
        assert load_plan(path).runs, path


def test_a_run_asking_for_more_gpus_than_the_machine_has_stops_the_sweep_in_one_line(tmp_path):
    """A local sweep on a machine with one GPU and a run of 8 devices: nothing could ever start it, so the sweep
    says so instead of waiting for a place that never frees."""
    from types import SimpleNamespace

    from harness.sweep import Plan, _drive, _Sweep

    spec = RunSpec("vaswani2017", "paper", 1, None, [], 8, 1, tmp_path / "run")
    state = _Sweep(plan=Plan("p", tmp_path, 0, [spec]), plan_path=tmp_path / "p.yaml", executor="local",
                   status={spec.label: {"state": "queued", "attempts": 0}}, settings=None, cpu_slots=1,
                   free_gpus=[0], pending=[spec])
    display = SimpleNamespace(update=lambda status: None, tick=lambda status: None)
    with pytest.raises(PlanError, match="asks for 8 GPUs per node and this machine has 1"):
        _drive(state, display)
