"""The W&B run of a training run, offline (no server is reachable here): one run, holding the resolved
config, the metrics, the figures as images and a table of sample outputs. Never synced by the tests."""

import json

import pytest
from test_cli import attnrepro

pytestmark = pytest.mark.slow


def test_offline_wandb_run_holds_config_metrics_images_and_samples(data_root, tmp_path):
    run_dir = tmp_path / "run"
    result = attnrepro("train", "bahdanau2014", "--preset", "tiny", "--wandb", "offline", "--run-dir", str(run_dir),
                       env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wandb sync" in result.stdout  # how to upload it later
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    records = next(runs[0].glob("run-*.wandb")).read_bytes()
    for text in (b"max_tokens", b"align_dim", b"bahdanau2014", b"val/loss", b"test/test_2016_flickr/bleu"):
        assert text in records, text  # the config and the metrics are in the run's record file
    images = sorted(p.name for p in (runs[0] / "files" / "media" / "images" / "figures").glob("*.png"))
    for kind in ("attention", "learning_curves", "bleu_by_length"):
        assert any(name.startswith(kind) for name in images), (kind, images)
    table = json.loads(next((runs[0] / "files" / "media" / "table").glob("samples*.table.json")).read_text())
    assert table["columns"] == ["source", "reference", "hypothesis"] and len(table["data"]) == 20
    assert sorted(p.name for p in (run_dir / "figures").glob("*.png"))  # the same figures in the run directory
