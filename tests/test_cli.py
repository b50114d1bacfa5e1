"""The command line as a user runs it: subprocesses on a slice of real Multi30k."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def attnrepro(*args: str, stdin: str | None = None, env: dict | None = None, cwd: Path | None = None):
    full_env = {**os.environ, "WANDB_MODE": "disabled", **(env or {})}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], input=stdin, capture_output=True,
                          text=True, env=full_env, cwd=cwd, timeout=600)


def checkout_commit() -> str:
    """What a run's provenance must record: this checkout's HEAD, or "unknown" outside a git checkout."""
    out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent)
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def assert_clean_error(result, *fragments: str):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("attnrepro: error:"), result.stderr
    for fragment in fragments:
        assert fragment in line, line


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory, data_root):
    """Tiny runs of each translation model (200 training pairs, 20 test sentences), trained once for the module."""
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for name in ("bahdanau2014", "cho2014", "vaswani2017"):
        run_dir = root / name
        result = attnrepro("train", name, "--preset", "tiny", "--pair", "en-de", "--seed", "3",
                           "--run-dir", str(run_dir), env={"ATTNREPRO_DATA": str(data_root)})
        assert result.returncode == 0, result.stderr[-3000:]
        runs[name] = run_dir
    return runs


def test_train_writes_a_complete_run_directory(trained_runs, data_root):
    run_dir = trained_runs["bahdanau2014"]
    for name in ("config.yaml", "command.txt", "provenance.json", "metrics.json", "hyps/test_2016_flickr.txt",
                 "checkpoints/last.ckpt", "logs/metrics.csv"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    split = metrics["splits"]["test_2016_flickr"]
    assert split["sentences"] == 20 and 0 <= split["bleu"] <= 100 and split["chrf"] > 0
    assert split["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert sum(b["n"] for b in split["bleu_by_length"]) == 20
    # the papers' conventions beside sacreBLEU: tokenised BLEU with compound splitting into German,
    # No-UNK subset, Multi30k's lowercased tokenised BLEU against the official tok/ references
    assert 0 <= split["tok_bleu"] <= 100 and "compound-split:##AT##" in split["tok_bleu_signature"]
    assert split["no_unk_sentences"] <= 20 and "tok_bleu_no_unk" in split
    assert 0 <= split["lc_tok_bleu"] <= 100 and list(split["lc_tok_refs"]) == [
        "multi30k/task1/tok/test_2016_flickr.lc.norm.tok.de.gz"]
    assert metrics["training"]["steps"] > 0 and metrics["training"]["target_tokens_per_s"] > 0
    hyps = (run_dir / "hyps/test_2016_flickr.txt").read_text().splitlines()
    assert len(hyps) == 20
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["seed"] == 3 and provenance["packages"]["torch"].startswith("2.")
    assert provenance["data_checksums"]["multi30k/task1/raw/train.de.gz"].startswith("2c2b73fd")
    assert provenance["git"]["commit"] == checkout_commit()
    assert "--preset tiny" in (run_dir / "command.txt").read_text()


def test_evaluate_any_split_with_another_beam(trained_runs, data_root):
    """A split scored with the run's own decoding goes into its record; with another beam (--beam and --set
    decode.beam are one door) beside it, under evaluations/, and the record keeps the run's own scores."""
    run_dir = trained_runs["cho2014"]
    env = {"ATTNREPRO_DATA": str(data_root)}
    result = attnrepro("evaluate", str(run_dir), "--split", "val", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["splits"]["val"]["beam"] == 2 and metrics["splits"]["val"]["sentences"] == 20  # tiny: beam 2
    assert "test_2016_flickr" in metrics["splits"]  # earlier scores are kept
    assert len((run_dir / "hyps/val.txt").read_text().splitlines()) == 20
    before = (run_dir / "metrics.json").read_bytes()
    for door in (["--beam", "1"], ["--set", "decode.beam=1"]):
        result = attnrepro("evaluate", str(run_dir), "--split", "val", *door, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        beside = run_dir / "evaluations" / "decode.beam=1"
        assert str(beside) in " ".join(result.stdout.split())
        other = json.loads((beside / "metrics.json").read_text())
        assert other["splits"]["val"]["beam"] == 1 and other["decode"]["beam"] == 1
        assert len((beside / "hyps/val.txt").read_text().splitlines()) == 20
        assert (run_dir / "metrics.json").read_bytes() == before


def test_a_run_is_evaluated_with_the_checkpoint_its_scores_are_of(tmp_path):
    """`evaluate/translate/caption RUN_DIR` use the checkpoint the run's training scored (averaged.ckpt with
    train.average_last), not best.ckpt: re-scoring a split must not mix weights within one metrics.json."""
    from harness.evaluate import locate
    from reproductions.common import rundir
    from reproductions.common.checkpoint import CheckpointError

    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    for name in ("best.ckpt", "last.ckpt", "averaged.ckpt"):
        (ckpts / name).write_bytes(b"weights")
    assert locate(tmp_path) == (tmp_path, ckpts / "best.ckpt")  # before training recorded what it scored
    rundir.update_metrics(tmp_path, "training", {"scored_checkpoint": "averaged.ckpt"})
    assert locate(tmp_path) == (tmp_path, ckpts / "averaged.ckpt")
    (ckpts / "averaged.ckpt").unlink()
    with pytest.raises(CheckpointError, match="averaged.ckpt is missing"):
        locate(tmp_path)


def test_evaluate_with_another_decoding_setting_prints_and_leaves_the_run_alone(trained_runs, data_root):
    run_dir = trained_runs["vaswani2017"]
    before = {name: (run_dir / name).read_bytes() for name in ("metrics.json", "hyps/test_2016_flickr.txt")}
    env = {"ATTNREPRO_DATA": str(data_root), "COLUMNS": "200"}
    result = attnrepro("evaluate", str(run_dir), "--split", "test_2016_flickr",
                       "--set", "decode.length_penalty=1.0", "--set", "decode.beam=2", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    row = next(line for line in result.stdout.splitlines() if "test_2016_flickr" in line)
    assert row.split("│")[-2].strip() == "2"  # the beam column: the override took effect
    assert {name: (run_dir / name).read_bytes() for name in before} == before
    as_json = attnrepro("evaluate", str(run_dir), "--split", "test_2016_flickr", "--set", "decode.beam=2", "--json",
                        env=env)
    assert as_json.returncode == 0, as_json.stderr[-2000:]
    scores = json.loads(as_json.stdout)  # stdout holds the JSON alone; tables and progress go to stderr
    assert "test_2016_flickr" in json.dumps(scores) and "bleu" in json.dumps(scores)
    wrong = attnrepro("evaluate", str(run_dir), "--set", "model.layers=6", env=env)
    assert_clean_error(wrong, "--set model.layers=6", "decoding settings only")
    typo = attnrepro("evaluate", str(run_dir), "--set", "decode.length_penality=1.0", env=env)
    assert_clean_error(typo, "decode.length_penality")


def test_translate_with_attention_plot(trained_runs, tmp_path):
    plot = tmp_path / "align.png"
    result = attnrepro("translate", str(trained_runs["bahdanau2014"] / "checkpoints/last.ckpt"),
                       "--plot-attention", str(plot), stdin="A man rides a bike.\nTwo dogs play in the snow.\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(result.stdout.strip().splitlines()) == 2
    for path in (plot, tmp_path / "align-2.png"):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000


@pytest.mark.parametrize("options", [("--layer", "0", "--head", "1"), ("--attention", "encoder"),
                                     ("--attention", "decoder"), ()])
def test_transformer_attention_plots_for_any_layer_and_head(trained_runs, tmp_path, options):
    plot = tmp_path / "attn.png"
    result = attnrepro("translate", str(trained_runs["vaswani2017"]), "--plot-attention", str(plot), *options,
                       stdin="A girl in a red coat.\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert plot.read_bytes()[:4] == b"\x89PNG" and plot.stat().st_size > 2000


def test_transformer_run_records_flops_and_scores_the_averaged_checkpoint(trained_runs):
    run_dir = trained_runs["vaswani2017"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    training = metrics["training"]
    assert training["training_flops"] > 0 and training["flops_per_target_token"] > 0
    assert training["scored_checkpoint"] == "averaged.ckpt"
    assert metrics["splits"]["test_2016_flickr"]["checkpoint"] == "averaged.ckpt"
    periodic = sorted((run_dir / "checkpoints" / "periodic").glob("step*.ckpt"))
    assert len(periodic) >= 1
    import torch

    stored = torch.load(periodic[-1], map_location="cpu", weights_only=False)
    assert "optimizer_states" not in stored and stored["state_dict"] and stored["attnrepro"]["config"]


@pytest.mark.parametrize("name, options, fragment", [
    ("vaswani2017", ("--head", "9"), "--head 9 is out of range"),
    ("cho2014", ("--layer", "0"), "no layers, heads"),
])
def test_attention_view_options_are_checked(trained_runs, tmp_path, name, options, fragment):
    result = attnrepro("translate", str(trained_runs[name]), "--plot-attention", str(tmp_path / "x.png"), *options,
                       stdin="A dog.\n")
    assert_clean_error(result, fragment)


def test_translate_refuses_a_plot_for_the_fixed_vector_model(trained_runs, tmp_path):
    result = attnrepro("translate", str(trained_runs["cho2014"]), "--plot-attention", str(tmp_path / "x.png"),
                       stdin="A dog.\n")
    assert_clean_error(result, "no attention to plot")


@pytest.mark.parametrize("args, fragments", [
    (("train", "bahdanau2041"), ("unknown reproduction 'bahdanau2041'", "Did you mean 'bahdanau2014'")),
    (("train", "cho2014", "--preset", "huge"), ("no preset 'huge'",)),
    (("train", "cho2014", "--set", "model.hiden=3"), ("unknown config key 'model.hiden'",)),
    (("train", "cho2014", "--set", "data.pair=en-xx"), ("unknown Multi30k language 'xx'",)),
    (("evaluate", "/nonexistent/run"), ("/nonexistent/run does not exist",)),
])
def test_bad_input_gets_one_clear_line(args, fragments, tmp_path, data_root):
    run_dir = ("--run-dir", str(tmp_path / "r")) if args[0] == "train" else ()
    result = attnrepro(*args, *run_dir, env={"ATTNREPRO_DATA": str(data_root)})
    assert_clean_error(result, *fragments)
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_missing_data_names_the_file(tmp_path):
    result = attnrepro("train", "bahdanau2014", "--run-dir", str(tmp_path / "r"),
                       env={"ATTNREPRO_DATA": str(tmp_path / "empty")})
    assert_clean_error(result, "train.en.gz not found", "ATTNREPRO_DATA")


def test_corrupt_checkpoint_is_refused(trained_runs, tmp_path):
    good = (trained_runs["bahdanau2014"] / "checkpoints/last.ckpt").read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good[: len(good) // 2])
    result = attnrepro("translate", str(truncated), stdin="A dog.\n")
    assert_clean_error(result, "truncated.ckpt is corrupt or truncated")
    foreign = tmp_path / "foreign.ckpt"
    import torch

    torch.save({"weights": torch.zeros(2)}, foreign)
    result = attnrepro("evaluate", str(foreign))
    assert_clean_error(result, "foreign.ckpt is not an attnrepro checkpoint")


def test_existing_run_directory_is_not_overwritten(trained_runs):
    result = attnrepro("train", "bahdanau2014", "--run-dir", str(trained_runs["bahdanau2014"]))
    assert_clean_error(result, "already holds a run")


def test_list_names_every_reproduction_and_its_baseline():
    result = attnrepro("list", env={"COLUMNS": "200"})
    assert result.returncode == 0
    assert "bahdanau2014" in result.stdout and "cho2014" in result.stdout and "RNNsearch" in result.stdout


def test_reproduce_compares_each_paper_with_its_baseline_and_reuses_finished_runs(tmp_path, data_root):
    env = {"ATTNREPRO_DATA": str(data_root), "COLUMNS": "200"}
    first = attnrepro("reproduce", "--preset", "tiny", "--out", str(tmp_path), "--slots", "2", env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    for title in ("RNNsearch (bahdanau2014)", "RNNencdec (cho2014)", "Transformer (vaswani2017)",
                  "Soft-Attention (xu2015)", "Hard-Attention (xu2015-hard)", "Show and Tell (NIC) (vinyals2015)"):
        assert title in first.stdout
    assert "CIDEr-D" in first.stdout and "sacreBLEU" in first.stdout
    names = ["bahdanau2014", "cho2014", "vaswani2017", "vinyals2015", "xu2015", "xu2015-hard"]
    assert all((tmp_path / f"{n}-tiny-seed1" / "metrics.json").is_file() for n in names)
    assert (tmp_path / "plan.yaml").is_file() and (tmp_path / "report" / "report.md").is_file()
    stamp = (tmp_path / "cho2014-tiny-seed1" / "metrics.json").stat().st_mtime
    again = attnrepro("reproduce", "--preset", "tiny", "--out", str(tmp_path), "--no-report", env=env)
    assert again.returncode == 0 and "RNNsearch (bahdanau2014)" in again.stdout
    assert (tmp_path / "cho2014-tiny-seed1" / "metrics.json").stat().st_mtime == stamp  # not trained again


def test_multi30k_benchmark_script_writes_its_json(tmp_path, data_root):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "multi30k.py"
    result = subprocess.run(
        [sys.executable, str(script), "--preset", "tiny", "--models", "bahdanau2014", "cho2014",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=script.parents[1],
        env={**os.environ, "WANDB_MODE": "disabled", "ATTNREPRO_DATA": str(data_root), "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "result.json").read_text())
    assert report["preset"] == "tiny" and set(report["runs"]) == {"bahdanau2014", "cho2014"}
    assert report["git"]["commit"] == checkout_commit()
    assert report["machine"]["cpus"] and report["machine"]["cpu"] and report["packages"]["torch"]
    budget = report["time_budget_machine"]  # the machine's rates, beside the targets' machine
    assert budget["matmul_tflops"]["fp32"] > 0 and budget["targets_machine"]["cpus"] == 2
    assert isinstance(budget["differs"], list)
    assert report["targets"]["bahdanau2014"]["met"] is False  # 200 pairs and 10 steps translate nothing
    assert report["runs"]["cho2014"]["config"]["model"]["hidden"] == 16
    assert "bahdanau2014" in result.stdout and "target bahdanau2014" in result.stdout

    # benchmarks/redecode.py: the record's runs decoded again. With their own settings: the recorded scores.
    redecode = Path(__file__).resolve().parents[1] / "benchmarks" / "redecode.py"
    env = {**os.environ, "WANDB_MODE": "disabled", "ATTNREPRO_DATA": str(data_root), "COLUMNS": "200"}

    def run(*args):
        return subprocess.run([sys.executable, str(redecode), *args], capture_output=True, text=True, timeout=600,
                              cwd=script.parents[1], env=env)

    same = run(str(tmp_path), "--models", "cho2014", "--out", str(tmp_path / "same"))
    assert same.returncode == 0, same.stderr[-3000:]
    again = json.loads((tmp_path / "same" / "result.json").read_text())["runs"]["cho2014"]
    assert again["scores"] and again["trained_at"] == report["runs"]["cho2014"]["git"]
    for split, scores in again["scores"].items():  # every score and length, not just a BLEU that may be 0
        assert scores == report["runs"]["cho2014"]["splits"][split]
    greedy = run(str(tmp_path), "--split", "val", "--set", "decode.beam=1", "--out", str(tmp_path / "greedy"))
    assert greedy.returncode == 0, greedy.stderr[-3000:]
    record = json.loads((tmp_path / "greedy" / "result.json").read_text())
    assert record["overrides"] == ["decode.beam=1"] and record["git"]["commit"] == checkout_commit()
    assert {r["scores"]["val"]["beam"] for r in record["runs"].values()} == {1}
    assert "cho2014" in greedy.stdout and "val" in greedy.stdout
    bad = run(str(tmp_path), "--set", "model.hidden=8", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "decode.KEY=VALUE" in bad.stderr and "Traceback" not in bad.stderr
    missing = run(str(tmp_path / "nowhere"), "--out", str(tmp_path / "bad"))
    assert missing.returncode == 2 and "result.json does not exist" in missing.stderr
    assert not (tmp_path / "bad").exists()  # nothing written for a failed call
