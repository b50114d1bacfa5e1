"""`attnrepro report` against the papers: a paper cell meets only runs of its model, preset, dataset, pair, split
and scoring convention; every other meeting is "n/a" with the reason, and both numbers are shown."""

from __future__ import annotations

import json

import pytest
import yaml

from harness.report import build_report, judge, paper_cells
from reproductions import paper_results
from reproductions.common.config import ConfigError


@pytest.fixture(scope="module")
def cells():
    return paper_cells()


def test_a_sacrebleu_row_meets_a_tok_bleu_cell_as_n_a_with_both_numbers(cells):
    row = judge(cells, "bahdanau2014", "paper", "wmt14", "en-fr", "newstest2014", "bleu", 26.5)
    assert row["paper"]["value"] == 26.75 and row["paper"]["convention"] == "tok_bleu"
    assert row["verdict"].startswith("n/a (the paper's number is tok_bleu, ours here is sacrebleu")


def test_same_convention_same_data_gets_a_verdict(cells):
    all_ = judge(cells, "bahdanau2014", "paper", "wmt14", "en-fr", "newstest2014", "tok_bleu", 26.0)
    assert (all_["paper"]["value"], all_["paper"]["column"], all_["verdict"]) == (26.75, "All", "reproduced")
    no_unk = judge(cells, "bahdanau2014", "paper", "wmt14", "en-fr", "newstest2014", "tok_bleu_no_unk", 31.0)
    assert (no_unk["paper"]["value"], no_unk["verdict"]) == (34.16, "not reproduced")
    shorter = judge(cells, "bahdanau2014", "paper30", "wmt14", "en-fr", "newstest2014", "tok_bleu", 20.0)
    assert (shorter["paper"]["label"], shorter["verdict"]) == ("RNNsearch-30", "within tolerance")
    # Table 1's RNNencdec rows are the baseline's
    base = judge(cells, "cho2014", "paper", "wmt14", "en-fr", "newstest2014", "tok_bleu", 17.5)
    assert (base["paper"]["label"], base["paper"]["value"], base["verdict"]) == ("RNNencdec-50", 17.82, "reproduced")


def test_a_run_of_another_pair_is_n_a(cells):
    # the En-De Transformer preset run with --pair de-en: the paper has no de-en number
    de_en = judge(cells, "vaswani2017", "paper", "wmt14", "de-en", "newstest2014", "tok_bleu", 27.3)
    assert "paper" not in de_en
    assert de_en["verdict"] == ("n/a (the paper reports tok_bleu on wmt14 en-de newstest2014, wmt14 en-fr "
                                "newstest2014, not on wmt14 de-en newstest2014)")
    # `paper` (the En-De config) with --pair en-fr is not the paper's En-Fr row (preset paper_enfr)
    en_fr = judge(cells, "vaswani2017", "paper", "wmt14", "en-fr", "newstest2014", "tok_bleu", 38.1)
    assert en_fr["paper"]["value"] == 38.1
    assert en_fr["verdict"] == "n/a (the paper's Transformer (base) is trained by preset paper_enfr, this run by paper)"
    # the En-De cell meets only the En-De run
    en_de = judge(cells, "vaswani2017", "paper", "wmt14", "en-de", "newstest2014", "tok_bleu", 24.0)
    assert (en_de["paper"]["value"], en_de["verdict"]) == (27.3, "not reproduced")


def test_captions_compare_bleu_without_brevity_penalty(cells):
    coco = judge(cells, "xu2015", "paper", "flickr8k", None, "test", "bleu4", 19.0)
    assert coco["paper"]["convention"] == "bleu_nobp" and coco["verdict"].startswith("n/a (the paper's number is "
                                                                                      "bleu_nobp, ours here is coco")
    nobp = judge(cells, "xu2015", "paper", "flickr8k", None, "test", "bleu4_nobp", 19.0)
    assert (nobp["paper"]["value"], nobp["verdict"]) == (19.5, "reproduced")
    meteor = judge(cells, "xu2015-hard", "paper", "flickr8k", None, "test", "meteor", 17.0)
    assert (meteor["paper"]["value"], meteor["verdict"]) == (20.30, "not reproduced")
    assert judge(cells, "xu2015", "cpu", "flickr8k", None, "test", "cider_d", 40.0)["verdict"] == \
        "n/a (cpu is not paper scale)"


def test_multi30k_reference_point_is_shown_never_judged(cells):
    row = judge(cells, "vaswani2017", "cpu", "multi30k", "en-de", "test_2016_flickr", "lc_tok_bleu", 40.0)
    assert row["paper"]["value"] == 41.02 and "Wu et al. 2021" in row["paper"]["source"]
    assert row["verdict"] == "n/a (Transformer-Tiny (text-only) is a published reference point that no preset trains)"


def test_paper_results_files_are_checked(tmp_path):
    bad = tmp_path / "paper_results.yaml"
    cell = {"model": "x", "label": "X", "dataset": "wmt14", "pair": "en-fr", "split": "newstest2014",
            "metric": "tok_bleu", "convention": "sacrebleu", "value": 1.0}
    bad.write_text(yaml.safe_dump({"source": "s", "cells": [cell]}))
    with pytest.raises(ConfigError, match=r"paper_results.yaml: cells\[0\] \(X\) says convention 'sacrebleu' for "
                                          r"metric 'tok_bleu', which is scored as 'tok_bleu'"):
        paper_results.load(bad)
    bad.write_text(yaml.safe_dump({"source": "s", "cells": [{**cell, "convention": "tok_bleu", "presets": "p"}]}))
    with pytest.raises(ConfigError, match=r"paper_results.yaml: unknown config key 'cells\[0\].presets'"):
        paper_results.load(bad)
    bad.write_text(yaml.safe_dump({"source": "s", "cells": [{"model": "x", "label": "X", "value": 1.0}]}))
    with pytest.raises(ConfigError, match=r"paper_results.yaml: .*missing 4 required .*'dataset', 'split'"):
        paper_results.load(bad)
    assert paper_results.run_data({"dataset": "karpathy", "karpathy_json": "coco/dataset_coco.json"}) == ("coco", None)


def _fake_run(root, name, preset, pair, seed, splits):
    run = root / f"{name}-{preset}-{pair}-s{seed}"
    run.mkdir(parents=True)
    (run / "provenance.json").write_text(json.dumps({"reproduction": name, "preset": preset, "seed": seed}))
    (run / "metrics.json").write_text(json.dumps({"splits": splits, "training": {}}))
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"dataset": "wmt14", "pair": pair}}))
    return run


def test_a_score_recorded_as_none_is_left_out_not_averaged(tmp_path):
    """No-UNK BLEU is None where no test sentence is free of [UNK] (a short test slice): that row has no score."""
    runs = tmp_path / "runs"
    scores = {"bleu": 25.1, "chrf": 50.0, "tok_bleu": 26.4, "tok_bleu_no_unk": None}
    _fake_run(runs, "bahdanau2014", "paper", "en-fr", 1, {"newstest2014": scores})
    _fake_run(runs, "cho2014", "paper", "en-fr", 1, {"newstest2014": {**scores, "tok_bleu_no_unk": 20.0}})
    section = next(s for s in build_report([runs], tmp_path / "report", with_tests=False)["sections"]
                   if s["paper"] == "bahdanau2014")
    rows = {r["key"]: r for r in section["rows"]}
    assert "tok_bleu_no_unk" not in rows and rows["tok_bleu"]["ours"]["mean"] == 26.4


@pytest.mark.slow
def test_report_of_paper_runs_shows_both_conventions_and_never_mixes_pairs(tmp_path):
    runs = tmp_path / "runs"
    scores = {"bleu": 25.1, "chrf": 50.0, "tok_bleu": 26.4, "tok_bleu_no_unk": 33.0}
    _fake_run(runs, "bahdanau2014", "paper", "en-fr", 1, {"newstest2014": scores})
    _fake_run(runs, "cho2014", "paper", "en-fr", 1, {"newstest2014": {**scores, "bleu": 16.0, "tok_bleu": 17.0}})
    _fake_run(runs, "bahdanau2014", "paper", "de-en", 1, {"newstest2014": scores})
    _fake_run(runs, "vaswani2017", "paper", "en-de", 1, {"newstest2014": {"bleu": 26.0, "tok_bleu": 27.0}})
    _fake_run(runs, "cho2014", "paper_ende", "en-de", 1, {"newstest2014": {"bleu": 15.0, "tok_bleu": 16.0}})
    report = build_report([runs], tmp_path / "report", with_tests=False)
    transformer = next(s for s in report["sections"] if s["paper"] == "vaswani2017")
    assert transformer["baseline_preset"] == "paper_ende"  # the En-De baseline, never cho2014 `paper` (En-Fr)
    tok = next(r for r in transformer["rows"] if r["key"] == "tok_bleu")
    assert (tok["delta"], tok["paper"]["value"], tok["verdict"]) == (11.0, 27.3, "reproduced")
    en_fr, de_en = (next(s for s in report["sections"] if s["paper"] == "bahdanau2014" and s["pair"] == p)
                    for p in ("en-fr", "de-en"))
    rows = {r["metric"]: r for r in en_fr["rows"]}
    assert rows["BLEU"]["verdict"].startswith("n/a (the paper's number is tok_bleu")
    assert rows["tok BLEU (papers')"]["verdict"] == "reproduced"
    assert rows["tok BLEU (papers')"]["baseline_paper"]["value"] == 17.82
    assert rows["tok BLEU, No UNK"]["paper"]["value"] == 34.16 and rows["tok BLEU, No UNK"]["verdict"] == \
        "within tolerance"
    assert de_en["baseline"] == "cho2014" and all(r["baseline"] is None for r in de_en["rows"])  # no de-en baseline
    assert all(r["verdict"].startswith("n/a") for r in de_en["rows"])
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| newstest2014 | BLEU | 26.75 (tok_bleu, All) | 25.10 (n=1) |" in markdown
    assert "Scores of different conventions are never compared: **sacrebleu**:" in markdown


@pytest.mark.slow
def test_reproduce_dry_run_pairs_each_paper_model_with_a_baseline_on_the_same_data(tmp_path):
    from test_cli import attnrepro

    from harness.reproduce import plan_pairs, preset_data
    from reproductions import registry

    pairs = plan_pairs("paper")
    assert {p.paper for p in pairs} == {"bahdanau2014", "vaswani2017", "xu2015", "xu2015-hard"}
    for p in pairs:
        if p.baseline is not None:
            assert preset_data(p.baseline, p.baseline_preset) == preset_data(p.paper, p.preset), p
    transformer = next(p for p in pairs if p.paper == "vaswani2017")
    assert transformer.data == "wmt14 en-de"
    en_de_presets = [q for q in registry.get("cho2014").presets() if q.startswith("paper")
                     and preset_data("cho2014", q) == ("wmt14", "en-de")]
    if en_de_presets:  # the En-De RNNencdec preset (paper_ende), the Transformer's same-pair baseline
        assert transformer.baseline_preset in en_de_presets
    else:  # never the En-Fr RNNencdec
        assert transformer.baseline is None and "no cho2014 preset trains on wmt14 en-de" in transformer.why
    result = attnrepro("reproduce", "--preset", "paper", "--dry-run", "--out", str(tmp_path / "out"),
                       env={"COLUMNS": "250"})
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(x for x in result.stdout.splitlines() if "vaswani2017" in x)
    assert "wmt14 en-de" in line and (("none: no cho2014 preset" in line) != bool(en_de_presets))
    assert not (tmp_path / "out").exists()  # nothing planned on disk, nothing run
