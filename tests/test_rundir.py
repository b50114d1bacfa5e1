"""The typed run objects: RunDir, the one reader of run directories, and RunSpec, a run resolved once."""

from __future__ import annotations

import json
import pickle

import pytest
import yaml

from harness.runspec import RunSpec
from reproductions import registry, tasks
from reproductions.common.checkpoint import CheckpointError
from reproductions.common.errors import AttnreproError
from reproductions.common.rundir import RunDir


def _run(path, **provenance):
    path.mkdir(parents=True)
    (path / "provenance.json").write_text(json.dumps({"reproduction": "cho2014", "preset": "tiny", "seed": 3,
                                                      **provenance}))
    (path / "config.yaml").write_text(yaml.safe_dump({"data": {"pair": "en-de"}}))
    return RunDir(path)


def test_a_run_directory_reads_its_files_through_one_door(tmp_path):
    run = _run(tmp_path / "a")
    assert (run.reproduction, run.preset, run.seed) == ("cho2014", "tiny", 3)
    assert run.config == {"data": {"pair": "en-de"}} and run.started and run.metrics() == {} and not run.scored()
    (run.path / "metrics.json").write_text(json.dumps({"splits": {"test": {"bleu": 1.0}}}))
    assert run.scored() and run.metrics()["splits"]["test"]["bleu"] == 1.0
    assert run.hyps(tasks.get(registry.get("cho2014").task), "test") == run.path / "hyps" / "test.txt"


def test_damage_to_a_run_file_is_one_line_naming_it(tmp_path):
    run = _run(tmp_path / "a")
    (run.path / "provenance.json").write_text("{not json")
    with pytest.raises(AttnreproError, match=r"provenance.json is not valid JSON; .*start a new run"):
        run.check()
    other = _run(tmp_path / "b")
    (other.path / "provenance.json").write_text(json.dumps({"reproduction": "cho2014", "preset": "tiny"}))
    with pytest.raises(AttnreproError, match="has no 'seed'"):
        other.check()
    with pytest.raises(AttnreproError, match="is not a run directory"):
        RunDir(tmp_path / "nothing").check()
    (tmp_path / "b" / "metrics.json").write_text("[1, 2]")
    with pytest.raises(AttnreproError, match="metrics.json does not hold a JSON mapping; delete it"):
        other.metrics()


def test_the_scored_checkpoint_is_the_one_the_run_reports(tmp_path):
    run = _run(tmp_path / "a")
    with pytest.raises(CheckpointError, match="holds no checkpoints/best.ckpt"):
        run.scored_checkpoint()
    run.checkpoints.mkdir()
    (run.checkpoints / "last.ckpt").write_bytes(b"x")
    assert run.scored_checkpoint().name == "last.ckpt"
    (run.checkpoints / "best.ckpt").write_bytes(b"x")
    assert run.scored_checkpoint().name == "best.ckpt"
    (run.path / "metrics.json").write_text(json.dumps({"training": {"scored_checkpoint": "averaged.ckpt"}}))
    with pytest.raises(CheckpointError, match="averaged.ckpt is missing: the run's scores are of that checkpoint"):
        run.scored_checkpoint()


def test_runs_are_found_at_or_below_the_targets_once_each(tmp_path):
    a, b = _run(tmp_path / "sweep" / "a"), _run(tmp_path / "sweep" / "b")
    (tmp_path / "sweep" / "a" / "wandb" / "x").mkdir(parents=True)
    (tmp_path / "sweep" / "a" / "wandb" / "x" / "provenance.json").write_text("{}")  # W&B's copy: not a run
    found = RunDir.find([tmp_path / "sweep", a.path])
    assert [r.path for r in found] == [a.path, b.path]
    with pytest.raises(AttnreproError, match="holds no runs"):
        RunDir.find([tmp_path / "sweep" / "a" / "wandb"])
    with pytest.raises(AttnreproError, match="does not exist"):
        RunDir.find([tmp_path / "elsewhere"])


def test_a_spec_resolves_its_config_once_and_carries_it(tmp_path, monkeypatch):
    """A sweep's plan resolves each run as it reads it; what checks and trains the run later (here the data
    check, on a SLURM node the job) uses the config the spec carries, pickled with it, never the preset again."""
    from harness.sweep import check_data

    spec = RunSpec("cho2014", "tiny", 1, "en-fr", ["train.max_steps=7"], 1, 1, tmp_path / "run")
    assert spec.cfg.data.pair == "en-fr" and spec.cfg.train.max_steps == 7 and spec.label == "run"
    copy = pickle.loads(pickle.dumps(spec))  # what a SLURM job receives
    checked = []
    monkeypatch.setattr(type(registry.get("cho2014")), "load_config",
                        lambda *a, **k: pytest.fail("the config was resolved again"))
    monkeypatch.setattr(type(tasks.get("translation")), "check_data", lambda self, cfg: checked.append(cfg))
    check_data([copy])
    assert checked == [spec.cfg]
    monkeypatch.undo()
    with pytest.raises(AttnreproError, match="unknown config key 'train.nope'"):
        RunSpec("cho2014", "tiny", 1, None, ["train.nope=1"], 1, 1, tmp_path / "bad")
