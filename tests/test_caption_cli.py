"""The captioning command line as a user runs it: train on a slice of real Flickr8k, evaluate, caption."""

import json

import pytest
from test_cli import assert_clean_error, attnrepro, checkout_commit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def caption_runs(tmp_path_factory, data_root):
    if not (data_root / "flickr8k" / "Images").is_dir():
        pytest.skip("Flickr8k images not under the data root")
    root = tmp_path_factory.mktemp("caption-runs")
    runs = {}
    for name in ("xu2015", "vinyals2015"):
        result = attnrepro("train", name, "--preset", "tiny", "--seed", "2", "--run-dir", str(root / name))
        assert result.returncode == 0, result.stderr[-3000:]
        runs[name] = root / name
    return runs


def test_train_scores_the_test_split_with_pycocoevalcap(caption_runs):
    run_dir = caption_runs["xu2015"]
    for name in ("config.yaml", "provenance.json", "metrics.json", "hyps/test.json", "checkpoints/last.ckpt"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    test = metrics["splits"]["test"]
    assert test["images"] == 8 and test["references_per_image"] == [5]
    for key in ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider_d"):
        assert 0 <= test[key] <= 100 * 10, key  # CIDEr-D can exceed 100
    assert test["spice"] is None and "offline" in test["spice_unavailable"]
    assert test["settings"]["pycocoevalcap"] and "CIDEr-D" in test["settings"]["cider"]
    assert metrics["training"]["steps"] > 0
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["encoder"] == "efficientnet-lite0" and provenance["train_images"] == 40
    assert len(json.loads((run_dir / "hyps/test.json").read_text())) == 8


def test_evaluate_again_with_another_beam(caption_runs):
    result = attnrepro("evaluate", str(caption_runs["vinyals2015"]), "--beam", "1", "--split", "dev",
                       env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CIDEr-D" in result.stdout and "dev" in result.stdout
    metrics = json.loads((caption_runs["vinyals2015"] / "evaluations" / "decode.beam=1" / "metrics.json").read_text())
    assert metrics["splits"]["dev"]["beam"] == 1  # beside the run's record: its own beam is 2
    assert "dev" not in json.loads((caption_runs["vinyals2015"] / "metrics.json").read_text())["splits"]


def test_caption_prints_captions_and_draws_attention(caption_runs, data_root, tmp_path):
    images = sorted((data_root / "flickr8k" / "Images").glob("1*.jpg"))[:2]
    plot = tmp_path / "attention.png"
    result = attnrepro("caption", str(caption_runs["xu2015"]), *map(str, images), "--plot-attention", str(plot))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(p) for p in images]
    assert plot.is_file() and plot.with_name("attention-2.png").is_file()
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_caption_errors_are_clear(caption_runs, tmp_path):
    image = tmp_path / "missing.jpg"
    assert_clean_error(attnrepro("caption", str(caption_runs["xu2015"]), str(image)), "missing.jpg", "does not exist")
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not a picture")
    assert_clean_error(attnrepro("caption", str(caption_runs["xu2015"]), str(not_an_image)), "notes.jpg",
                       "cannot read image")
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"\0" * 100)
    assert_clean_error(attnrepro("caption", str(broken), str(image)), "broken.ckpt", "corrupt")
    assert_clean_error(attnrepro("train", "xu2015", "--set", "data.encoder=alexnet", "--run-dir",
                                 str(tmp_path / "r")), "alexnet")


def test_fixed_vector_model_has_no_attention_to_plot(caption_runs, data_root, tmp_path):
    image = sorted((data_root / "flickr8k" / "Images").glob("1*.jpg"))[0]
    result = attnrepro("caption", str(caption_runs["vinyals2015"]), str(image), "--plot-attention",
                       str(tmp_path / "x.png"))
    assert_clean_error(result, "vinyals2015 has no attention to plot")


def test_flickr8k_benchmark_script_writes_its_json(data_root, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    if not (data_root / "flickr8k" / "Images").is_dir():
        pytest.skip("Flickr8k images not under the data root")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "flickr8k.py"
    result = subprocess.run(
        [sys.executable, str(script), "--preset", "tiny", "--models", "vinyals2015", "xu2015", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=script.parents[1],
        env={**os.environ, "WANDB_MODE": "disabled", "ATTNREPRO_DATA": str(data_root), "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "result.json").read_text())
    assert record["benchmark"] == "flickr8k" and record["git"]["commit"] == checkout_commit() and record["machine"]
    assert set(record["runs"]) == {"vinyals2015", "xu2015"}
    soft = record["runs"]["xu2015"]["splits"]["test"]
    checks = {c["target"]: c for c in record["target"]}
    assert set(checks) == {"soft B-4 (no BP) >= 21.3", "soft METEOR >= 20.3", "soft CIDEr-D >= 55"}  # no hard run
    b4 = checks["soft B-4 (no BP) >= 21.3"]  # the paper's convention: BLEU-4 without the brevity penalty
    assert b4["metric"] == "bleu4_nobp" and b4["value"] == soft["bleu4_nobp"] >= soft["bleu4"]
    assert b4["met"] == (soft["bleu4_nobp"] >= 21.3)
    assert record["features"]["splits"]["train"]["images"] == 40
    assert (tmp_path / "attention_xu2015.png").read_bytes()[:4] == b"\x89PNG"


def test_paper_preset_fails_in_one_line_before_any_work(tmp_path):
    """`--preset paper` (VGG-19) without torchvision or without its weights stops before reading data or
    computing a feature, with one line saying what to install or download and where to put it."""
    run_dir = tmp_path / "run"
    result = attnrepro("train", "xu2015", "--preset", "paper", "--set",
                       f"data.encoder_weights={tmp_path / 'vgg19.pth'}", "--run-dir", str(run_dir))
    try:
        import torchvision  # noqa: F401

        assert_clean_error(result, "data.encoder_weights=", "no such file")
    except ImportError:
        assert_clean_error(result, "torchvision", ".[paper]")
    assert "features" not in result.stderr  # no feature extraction started
    assert not (run_dir / "checkpoints").exists()


def test_flickr8k_benchmark_extracts_features_with_the_data_overrides(data_root, monkeypatch):
    """`--set data.encoder=...` reaches the up-front feature extraction (so the runs' clocks never include it);
    overrides of other sections are left to the runs."""
    import importlib.util
    from pathlib import Path
    from types import SimpleNamespace

    from reproductions.captioning.data import datamodule as caption_datamodule

    if not (data_root / "flickr8k" / "Images").is_dir():
        pytest.skip("Flickr8k images not under the data root")
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "flickr8k.py"
    spec = importlib.util.spec_from_file_location("flickr8k_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    seen = []
    monkeypatch.setattr(caption_datamodule, "split_features",
                        lambda cfg, data, root: seen.append(cfg.data.encoder) or SimpleNamespace(key="k"))
    out = bench.extract_features("tiny", ["data.encoder=efficientnet-lite2", "model.hidden_dim=8"],
                                 SimpleNamespace(print=lambda *a, **k: None))
    assert out["encoder"] == "efficientnet-lite2" and set(seen) == {"efficientnet-lite2"} and len(seen) == 3
