"""`attnrepro reproduce --rehearse`: a paper preset's whole path at miniature scale (local WMT14 shards or a
plain-text bitext, gloo DDP on 2 processes with the preset's accumulation, a SIGKILL and a resume, checkpoint
averaging, newstest2014 in every convention, the report's verdict), and a broken piece fails it in one line.
Every paper preset is rehearsed in CI by `tox -e paper` (`make test-paper`), which has torchvision."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_cli import assert_clean_error, attnrepro

from harness import rehearse
from reproductions import registry


def test_by_default_every_paper_preset_of_every_reproduction_is_rehearsed():
    runs = set(rehearse.rehearsal_runs(rehearse.paper_presets()))
    every = {(r.name, p) for r in registry.REPRODUCTIONS.values() for p in r.presets() if p.startswith("paper")}
    assert runs == every  # paper models and baselines alike: cho2014, vinyals2015 included
    assert {p for _, p in runs} >= {"paper", "paper30", "paper_big", "paper_enfr", "paper_big_enfr", "paper_coco"}


def test_only_paper_presets_are_rehearsed(tmp_path):
    result = attnrepro("reproduce", "--rehearse", "--preset", "quick", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert_clean_error(result, "--rehearse is for the paper presets, not quick")
    assert not (tmp_path / "out").exists()


def test_the_miniature_changes_sizes_and_step_counts_only():
    sets, data = rehearse.miniature_overrides("bahdanau2014", "paper", Path("/nonexistent"), 2,
                                              ["data.source=/elsewhere"])
    keys = {s.split("=")[0] for s in sets}
    assert keys <= {"model.emb_dim", "model.hidden", "model.align_dim", "model.maxout_dim", "train.max_steps",
                    "train.resume_every_n_steps", "train.log_every_n_steps", "train.val_every_n_batches",
                    "data.train_limit", "data.eval_limit", "data.batch_sentences"}, keys
    assert "data.batch_sentences=8" in sets  # split over the 2 processes as the paper's 80 over GPUs
    assert data == "wmt14 en-fr (data.source)"  # the user's own shards replace the generated ones


def test_caption_runs_without_torchvision_are_skipped_with_the_reason(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchvision" else real(name, *a))
    reason = rehearse._skip_reason("xu2015", "paper", [])
    assert "torchvision" in reason and "attnrepro[paper]" in reason
    assert rehearse._skip_reason("vaswani2017", "paper", []) is None


@pytest.mark.slow
def test_a_paper_row_rehearses_end_to_end_on_two_processes(data_root, tmp_path):
    """The Transformer's big row (20 averaged checkpoints, accumulation to train.tokens_per_step) and its RNNencdec
    baseline (En-De), each trained on 2 gloo processes, killed after step 7, resumed and judged."""
    out = tmp_path / "rehearsal"
    result = attnrepro("reproduce", "--rehearse", "--only", "vaswani2017", "--preset", "paper_big", "--devices", "2",
                       "--out", str(out), env={"ATTNREPRO_CACHE": str(tmp_path / "cache"), "COLUMNS": "250"})
    assert result.returncode == 0, result.stderr[-3000:]
    runs = {(r["name"], r["preset"]): r for r in json.loads((out / "rehearsal.json").read_text())["runs"]}
    assert set(runs) == {("vaswani2017", "paper_big"), ("cho2014", "paper_ende")}
    assert all(r["status"] == "ok" for r in runs.values()), runs
    big, base = runs["vaswani2017", "paper_big"], runs["cho2014", "paper_ende"]
    assert big["data"] == "wmt14 en-de (parquet)" and base["data"] == "wmt14 en-de (text)"
    for run in (big, base):
        assert run["checks"]["devices"] == 2 and run["checks"]["killed at step"] == rehearse.KILL_AT
        assert run["checks"]["resumed from"] == "resume.ckpt"
        assert set(run["checks"]["scored"]["newstest2014"]) >= {"bleu", "chrf", "tok_bleu"}
    assert big["checks"]["accumulation"] == 2  # train.tokens_per_step, measured on the miniature's batches
    assert big["checks"]["averaged"] == 20  # paper_big's average_last
    assert "vs paper 28.4" in big["checks"]["verdict"]  # Table 2's big En-De row, in its own convention
    metrics = json.loads((out / "runs" / "vaswani2017-paper_big" / "metrics.json").read_text())
    assert metrics["training"]["steps"] == 2 * 20 + 2 and metrics["training"]["scored_checkpoint"] == "averaged.ckpt"
    assert (out / "report" / "report.md").is_file()
    assert "step times not measured (no GPU here)" in result.stdout


def _broken_shards(folder: Path) -> None:
    """An En-Fr shard in HF's layout whose translation struct names its English field 'english'."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "fr-en").mkdir(parents=True)
    rows = [{"fr": "une phrase .", "english": "a sentence ."}] * 50
    column = pa.array(rows, type=pa.struct([("fr", pa.string()), ("english", pa.string())]))
    pq.write_table(pa.table({"translation": column}), folder / "fr-en" / "train-00000-of-00001.parquet")


@pytest.mark.slow
def test_a_renamed_parquet_column_fails_the_rehearsal_in_one_line(data_root, tmp_path):
    _broken_shards(tmp_path / "shards")
    result = attnrepro("reproduce", "--rehearse", "--only", "bahdanau2014", "--preset", "paper", "--out",
                       str(tmp_path / "out"), "--set", f"data.source={tmp_path / 'shards'}",
                       env={"ATTNREPRO_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 2
    assert_clean_error(result, "rehearsal failed for 2 of 2 runs", "train-00000-of-00001.parquet",
                       "translation.en")


def test_a_missing_newstest_file_fails_the_rehearsal_before_any_training(data_root, tmp_path):
    """A data root without newstest2014's French side: one line naming it, and no run started."""
    root = tmp_path / "data"
    for entry in data_root.iterdir():
        if entry.name != "wmt14":
            (root / entry.name).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(entry, root / entry.name)
    for path in (data_root / "wmt14").rglob("*.gz"):
        if path.name != "newstest2014.fr.gz":
            (root / path.relative_to(data_root)).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(path, root / path.relative_to(data_root))
    out = tmp_path / "out"
    result = attnrepro("reproduce", "--rehearse", "--only", "bahdanau2014", "--preset", "paper", "--out", str(out),
                       env={"ATTNREPRO_DATA": str(root), "ATTNREPRO_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 2
    assert_clean_error(result, "bahdanau2014 paper", "newstest2014.fr")
    assert not (out / "runs").exists()  # found before any run started


def _torchvision_or_skip() -> None:
    if os.environ.get("ATTNREPRO_REQUIRE_TORCHVISION") != "1":
        pytest.importorskip("torchvision", reason="the captioning paper presets need torchvision (tox -e paper)")


@pytest.mark.slow
def test_the_captioning_paper_preset_rehearses_with_a_random_vgg19(data_root, tmp_path):
    """xu2015 paper and its Show and Tell baseline: VGG-19 features of a few Flickr8k images from a random VGG-19
    saved as torchvision's weights file, the kill and resume, pycocoevalcap's scores and the verdict."""
    _torchvision_or_skip()
    out = tmp_path / "rehearsal"
    result = attnrepro("reproduce", "--rehearse", "--only", "xu2015", "--preset", "paper", "--out", str(out),
                       env={"ATTNREPRO_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    runs = {(r["name"], r["preset"]): r for r in json.loads((out / "rehearsal.json").read_text())["runs"]}
    assert set(runs) == {("xu2015", "paper"), ("vinyals2015", "paper")}
    assert all(r["status"] == "ok" and "random vgg19" in r["data"] for r in runs.values()), runs
    assert "vs paper" in runs["xu2015", "paper"]["checks"]["verdict"]
    assert (out / "fixtures" / "vgg19-random" / "vgg19-random.pth").is_file()


@pytest.mark.slow
def test_a_missing_vgg19_weights_file_fails_the_paper_preset_rehearsal_in_one_line(data_root, tmp_path):
    _torchvision_or_skip()
    missing = tmp_path / "vgg19-imagenet.pth"
    result = attnrepro("reproduce", "--rehearse", "--only", "xu2015", "--preset", "paper", "--out",
                       str(tmp_path / "out"), "--set", f"data.encoder_weights={missing}",
                       env={"ATTNREPRO_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 2
    assert_clean_error(result, "rehearsal failed", f"data.encoder_weights={missing}: no such file")
