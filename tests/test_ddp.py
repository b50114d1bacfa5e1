"""Multi-process training: `attnrepro train --devices 2` on CPU runs Lightning DDP over gloo (two processes);
only rank 0 writes the run directory and creates the W&B run."""

import json

import pytest
from test_cli import attnrepro

pytestmark = pytest.mark.slow


def test_two_process_ddp_run_writes_one_set_of_files_and_one_wandb_run(data_root, tmp_path):
    run_dir = tmp_path / "ddp"
    result = attnrepro("train", "cho2014", "--preset", "tiny", "--devices", "2", "--wandb", "offline",
                       "--run-dir", str(run_dir), "--set", "optim.cooldown=0.5",  # rank 0's clock, broadcast
                       env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["training"]["devices"] == 2
    assert metrics["splits"]["test_2016_flickr"]["sentences"] == 20
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.suffix != ".sha256") == ["best.ckpt",
                                                                                                   "last.ckpt"]
    assert (run_dir / "logs" / "metrics.csv").is_file() and not list((run_dir / "logs").glob("version_*"))
    assert "train/lr_cooldown" in (run_dir / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    assert not list(tmp_path.glob("ddp-*")) and not list(run_dir.glob("version_*"))
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["reproduction"] == "cho2014"
