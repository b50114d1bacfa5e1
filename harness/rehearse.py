"""`attnrepro reproduce --rehearse`: every run of the paper presets through its whole path on the machine at hand,
at miniature scale, so that a paper preset never fails for the first time after a day on GPUs.

A rehearsal of one run uses the preset's own config and code path and overrides only sizes and step counts:
1. the model: the integer sizes (layers, widths) of the reproduction's `tiny` preset; everything else the preset's;
2. the data: WMT14 training pairs read from a local folder, as Parquet shards in HF wmt/wmt14's schema (paper
   models) or as a plain-text bitext (baselines), made from newstest2012+2013 (MINI_PAIRS of them); validation and test
   splits as the preset names them, from the data root or the download cache. Captions: a few Flickr8k images (a
   Karpathy split file of them for the Flickr30k and COCO presets) and a randomly initialised VGG-19 / ResNet-101
   saved as torchvision's weights file (the user's own file with --set data.encoder_weights=PATH). A user's
   `--set data.source=FOLDER` (their own WMT14 shards) replaces the generated ones;
3. training on --devices processes (gloo DDP without GPUs) with the preset's gradient accumulation
   (train.tokens_per_step), killed with SIGKILL after step KILL_AT and resumed from its last checkpoint
   (`attnrepro train --resume`) to the end;
4. the periodic checkpoints averaged where the preset averages them, every test split scored in every convention;
5. the report's verdict found: the run's headline score set against its cell of the paper's table.
Then `--probe-steps N` (default 10 where there is a GPU, else 0) trains the full-size preset for N steps on the
same local data, and the measured time per step projects each run's device-hours over its budget.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from rich.console import Console

from reproductions import registry, tasks
from reproductions.common import rundir
from reproductions.common.errors import AttnreproError
from reproductions.common.io import atomic_write_json

from .tables import Col, print_table

KILL_AT = 7  # the rehearsal's SIGKILL comes after this optimiser step ...
RESUME_EVERY = 3  # ... and the run resumes from the checkpoint of step 6
MINI_STEPS = 12  # steps of a miniature run (more where it averages more checkpoints: 2 steps per checkpoint)
MINI_PAIRS = 300  # WMT14 training pairs of a miniature run
HF_COLUMN = "translation"  # the column of HF's WMT14 Parquet files (a {lang: sentence} struct per row)
CAPTION_IMAGES = {"train": 16, "val": 4, "test": 4}  # Flickr8k images of a miniature captioning run
VERDICTS = ("reproduced", "within tolerance", "not reproduced")  # a verdict against a paper cell (report.verdict)


@dataclass
class Rehearsal:
    """One run's rehearsal: what was checked and what it measured."""

    name: str
    preset: str
    data: str = ""
    devices: int = 1
    status: str = "pending"  # ok, failed, skipped
    error: str = ""
    overrides: list[str] = field(default_factory=list)  # the miniature's --set list (the user's come after)
    checks: dict = field(default_factory=dict)
    minutes: float | None = None
    probe: dict = field(default_factory=dict)


def paper_presets(only: list[str] | None = None) -> list[str]:
    """Every paper-scale preset of the paper models (all of them, or those named by --only)."""
    papers = [registry.get(n) for n in only] if only else registry.papers()
    return list(dict.fromkeys(p for repro in papers for p in repro.presets() if p.startswith("paper")))


def rehearsal_runs(presets: list[str], only: list[str] | None = None) -> list[tuple[str, str]]:
    """(reproduction, preset) of each run `reproduce` would train for these presets: paper models and baselines."""
    from .reproduce import plan_pairs

    runs: dict[tuple[str, str], None] = {}
    for preset in presets:
        for pairing in plan_pairs(preset, only):
            runs[(pairing.paper, pairing.preset)] = None
            if pairing.baseline:
                runs[(pairing.baseline, pairing.baseline_preset)] = None
    return list(runs)


# ------------------------------------------------------------------------------------------ the local data


def _write_once(folder: Path, write) -> Path:
    """`write(tmp)` fills a temporary folder, renamed to `folder` when complete: a killed rehearsal leaves no
    half-made fixture that the next one would trust."""
    if folder.is_dir():
        return folder
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    tmp.rename(folder)
    return folder


def wmt14_fixture(root: Path, pair: str, kind: str) -> Path:
    """The first pairs of newstest2012 and newstest2013 (6003, multi-parallel) as a WMT14 training folder: `parquet`
    (HF wmt/wmt14's layout, de-en/train-0000K-of-00002.parquet, a struct column `translation`) or `text`
    (train.en.gz and train.XX, as a user's own bitext)."""
    from reproductions.common.data.sources import read_lines
    from reproductions.translation.data.corpus import hub_config, parse_pair
    from reproductions.translation.data.files import wmt14_file

    src, tgt = parse_pair(pair)

    def lines(lang: str) -> list[str]:
        return [line for split in ("newstest2012", "newstest2013")
                for line in read_lines(wmt14_file(split, lang, pair))]

    def write(tmp: Path) -> None:
        text = {lang: lines(lang) for lang in (src, tgt)}
        if kind == "text":
            import gzip

            (tmp / f"train.{src}.gz").write_bytes(gzip.compress(("\n".join(text[src]) + "\n").encode()))
            (tmp / f"train.{tgt}").write_text("\n".join(text[tgt]) + "\n", encoding="utf-8")
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        langs = sorted((src, tgt), key=lambda lang: lang == "en")  # HF's field order: de, en / fr, en
        (tmp / hub_config(pair)).mkdir()
        half = len(text[src]) // 2
        for k, (start, stop) in enumerate([(0, half), (half, len(text[src]))]):
            rows = [{lang: text[lang][i] for lang in langs} for i in range(start, stop)]
            column = pa.array(rows, type=pa.struct([(lang, pa.string()) for lang in langs]))
            shard = tmp / hub_config(pair) / f"train-{k:05d}-of-00002.parquet"
            pq.write_table(pa.table({HF_COLUMN: column}), shard)

    return _write_once(root / f"wmt14-{kind}-{hub_config(pair)}", write)


def karpathy_fixture(root: Path, name: str) -> Path:
    """A Karpathy split file (dataset_*.json's schema) of a few Flickr8k images, for the Flickr30k and COCO presets,
    under the preset's own file name (`dataset_coco.json`: the report names the run's dataset by it); its images stay
    where Flickr8k's are (data.images_dir)."""
    from reproductions.captioning.data.captions import load_flickr8k

    def write(tmp: Path) -> None:
        images = []
        for split, count in CAPTION_IMAGES.items():
            data = load_flickr8k({"val": "dev"}.get(split, split))  # Flickr8k names its validation split dev
            for image, refs in list(zip(data.images, data.captions))[:count]:
                images.append({"filename": image, "split": split,
                               "sentences": [{"raw": ref, "tokens": ref.split()} for ref in refs]})
        (tmp / name).write_text(json.dumps({"images": images}))

    return _write_once(root / f"karpathy-{Path(name).stem}", write) / name


def random_encoder_weights(root: Path, encoder: str) -> Path:
    """A randomly initialised torchvision VGG-19 / ResNet-101 saved as its ImageNet weights file would be: the
    paper's encoder at its real size, without the download (the rehearsal checks the path, not the features)."""

    def write(tmp: Path) -> None:
        import torch
        import torchvision

        torch.save(getattr(torchvision.models, encoder)().state_dict(), tmp / f"{encoder}-random.pth")

    return _write_once(root / f"{encoder}-random", write) / f"{encoder}-random.pth"


# ------------------------------------------------------------------------------------- one run's overrides


def _tiny_sizes(repro) -> list[str]:
    """model.KEY=VALUE for each integer model size of the reproduction's tiny preset."""
    tiny = yaml.safe_load((repro.config_folder / "tiny.yaml").read_text())
    return [f"model.{k}={v}" for k, v in (tiny.get("model") or {}).items() if type(v) is int]


def _steps(cfg) -> int:
    return max(MINI_STEPS, 2 * cfg.train.average_last + 2)


def miniature_overrides(name: str, preset: str, fixtures: Path, devices: int, user: list[str]) -> tuple[list[str], str]:
    """The --set list of one run's miniature (before the user's own), and what data it reads."""
    repro = registry.get(name)
    cfg = repro.load_config(preset, user)
    sets = _tiny_sizes(repro) + [f"train.max_steps={_steps(cfg)}", f"train.resume_every_n_steps={RESUME_EVERY}",
                                 "train.log_every_n_steps=1"]
    if cfg.train.average_last:
        sets.append("train.checkpoint_every_n_steps=2")
    if getattr(cfg.train, "val_every_n_batches", None):
        sets.append("train.val_every_n_batches=4")
    data_sets, what = MINIATURE_DATA[repro.task](repro, preset, cfg, fixtures, devices, user, sets)
    return sets + data_sets, what


def _translation_data(repro, preset, cfg, fixtures: Path, devices: int, user: list[str], sets: list[str]):
    """A few hundred WMT14 pairs from a local folder; the preset's validation and test splits. The vocabulary keeps
    the preset's size: a few hundred pairs hold fewer words than that, so nothing is [UNK] in training and the
    untrained miniature still writes words (an all-[UNK] output would be empty)."""
    d = cfg.data
    mine = [f"data.train_limit={MINI_PAIRS}", "data.eval_limit=16"]
    if d.max_tokens:
        mine.append("data.max_tokens=300")
    if getattr(d, "batch_sentences", None):
        mine.append(f"data.batch_sentences={4 * devices}")  # split over the processes, as 80 over GPUs
    user_source = any(s.startswith("data.source=") for s in user)
    what = f"{d.dataset} {d.pair}" + (" (data.source)" if user_source else "")
    if d.dataset == "wmt14" and d.train_split == "train" and not user_source:
        kind = "parquet" if repro.role == "paper" else "text"
        mine.append(f"data.source={wmt14_fixture(fixtures, d.pair, kind)}")
        what = f"wmt14 {d.pair} ({kind})"
    if cfg.train.tokens_per_step:
        mine.append(f"train.tokens_per_step={_two_batches_per_process(repro, preset, sets + mine + user, devices)}")
    return mine, what


def _caption_data(repro, preset, cfg, fixtures: Path, devices: int, user: list[str], sets: list[str]):
    """A few Flickr8k images (as a Karpathy split for the Flickr30k and COCO presets) and a random encoder."""
    d, images = cfg.data, CAPTION_IMAGES
    mine = [f"data.train_limit={images['train']}", f"data.eval_limit={images['test']}",
            f"data.batch_size={4 * devices}", "data.min_word_count=1", "train.max_epochs=1000"]
    what = d.dataset
    if d.dataset == "karpathy":
        name = Path(d.karpathy_json or "dataset_karpathy.json").name
        mine += [f"data.karpathy_json={karpathy_fixture(fixtures, name)}", f"data.images_dir={_flickr8k_images()}"]
        what = f"Flickr8k images as a Karpathy split ({name})"
    if d.encoder in ("vgg19", "resnet101") and not any(s.startswith("data.encoder_weights=") for s in user):
        mine.append(f"data.encoder_weights={random_encoder_weights(fixtures, d.encoder)}")
        what += f", random {d.encoder}"
    return mine, what


MINIATURE_DATA = {"translation": _translation_data, "captioning": _caption_data}  # by registry task name


def _two_batches_per_process(repro, preset: str, sets: list[str], devices: int) -> int:
    """train.tokens_per_step of a miniature: two batches per process and step, measured on its data as training
    measures it (the step budget's mean real target tokens of epoch 0's batches), so the accumulation is 2."""
    from reproductions.common.data.sources import cache_root
    from reproductions.translation.data.datamodule import TranslationDataModule

    cfg = repro.load_config(preset, sets)
    data = TranslationDataModule(cfg.data, seed=1, cache_dir=cache_root())  # the cache the run then reuses
    data.load()
    return round(data.step_budget(None, devices, accumulate=2).tgt_tokens)


def _flickr8k_images() -> Path:
    from reproductions.captioning.data.captions import load_flickr8k

    return load_flickr8k("test").paths[0].parent


def _skip_reason(name: str, preset: str, user: list[str]) -> str | None:
    """Why a run cannot be rehearsed here (its encoder's package missing), or None."""
    import importlib.util

    cfg = registry.get(name).load_config(preset, user)
    encoder = getattr(cfg.data, "encoder", None)
    if encoder in ("vgg19", "resnet101") and importlib.util.find_spec("torchvision") is None:
        return (f"data.encoder={encoder} needs torchvision, not installed here (pip install 'attnrepro[paper]'); "
                "the GPU nodes that run this preset need it too")
    return None


# ---------------------------------------------------------------------------------------------- the runs


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness.cli", *args]


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("attnrepro: error:")]
    return (errors or lines or ["(no output)"])[-1].removeprefix("attnrepro: error: ")


def _launch(command: list[str], log: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"$ {' '.join(command)}\n")
        fh.flush()
        done = subprocess.run(command, stdout=fh, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
        fh.write(done.stderr)
    return done


def rehearse_one(item: Rehearsal, out: Path, user: list[str]) -> None:
    """Train the miniature, kill it, resume it, and check what it wrote. Fills `item`; raises nothing."""
    run_dir = out / "runs" / f"{item.name}-{item.preset}"
    log = out / "logs" / f"{item.name}-{item.preset}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    started = time.monotonic()
    try:
        repro = registry.get(item.name)
        task = tasks.get(repro.task)
        task.check_scoring(repro.load_config(item.preset, user))
        item.overrides, item.data = miniature_overrides(item.name, item.preset, out / "fixtures", item.devices, user)
        sets = item.overrides
        # every file the miniature reads, as the real run's sweep checks them first (translation: the preset's own
        # validation and test files)
        task.check_data(repro.load_config(item.preset, sets + user))
        if run_dir.exists():  # a rehearsal's own earlier attempt: cleared under its lock, as a sweep does
            with rundir.RunLock(run_dir):
                rundir.clear_run_dir(run_dir)
        command = _cli("train", item.name, "--preset", item.preset, "--run-dir", str(run_dir), "--devices",
                       str(item.devices), *[a for s in sets + user for a in ("--set", s)])
        killed = _launch(command, log, env={"ATTNREPRO_INJECT_FAULT": f"kill@{KILL_AT}"})
        if killed.returncode != -9:
            raise AttnreproError(f"training ended with status {killed.returncode} before the planned kill at step "
                                 f"{KILL_AT}: {_last_line(killed.stderr)}")
        item.checks["killed at step"] = KILL_AT
        resumed = _launch(_cli("train", "--resume", str(run_dir), "--devices", str(item.devices)), log)
        if resumed.returncode != 0:
            raise AttnreproError(f"resume failed (status {resumed.returncode}): {_last_line(resumed.stderr)}")
        item.checks.update(_check_run(item, run_dir))
        item.status = "ok"
    except AttnreproError as err:
        item.status, item.error = "failed", str(err).splitlines()[0]
    item.minutes = round((time.monotonic() - started) / 60, 2)


def _check_run(item: Rehearsal, run_dir: Path) -> dict:
    """What the finished miniature must have written; raises AttnreproError naming the first thing missing."""
    repro = registry.get(item.name)
    run = rundir.RunDir(run_dir)
    provenance, metrics = run.provenance, run.metrics()
    cfg = repro.config_from_dict(run.config, str(run_dir / "config.yaml"))
    training = metrics.get("training", {})
    found: dict = {}
    if training.get("steps") != cfg.train.max_steps:
        raise AttnreproError(f"{run_dir}: {training.get('steps')} steps, not the {cfg.train.max_steps} planned")
    resumed = provenance.get("resumed") or []
    if not resumed:
        raise AttnreproError(f"{run_dir}/provenance.json records no resume after the kill")
    found["resumed from"] = resumed[0].get("from")
    found["devices"] = training.get("devices")
    batch = training.get("batch") or {}
    if "accumulate_grad_batches" in batch:
        found["accumulation"] = batch["accumulate_grad_batches"]
    if cfg.train.average_last:
        if training.get("scored_checkpoint") != "averaged.ckpt":
            raise AttnreproError(f"{run_dir}: scored {training.get('scored_checkpoint')}, not the average of the last "
                                 f"{cfg.train.average_last} checkpoints")
        found["averaged"] = len(list((run_dir / "checkpoints" / "periodic").glob("step*.ckpt")))
    task = tasks.get(repro.task)
    splits = metrics.get("splits", {})
    for split in cfg.data.test_splits:
        scores = splits.get(split)
        if not scores or scores.get(task.headline) is None:
            raise AttnreproError(f"{run_dir}/metrics.json has no {task.headline} for test split {split}")
        if getattr(cfg.data, "dataset", "") == "wmt14" and scores.get("tok_bleu") is None:
            raise AttnreproError(f"{run_dir}/metrics.json has no tokenised BLEU (the papers' convention) for {split}")
    found["scored"] = {s: {k: v for k, v in splits[s].items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                           and k in {c.key for c in task.columns} | {"tok_bleu", "tok_bleu_no_unk"}}
                       for s in cfg.data.test_splits}
    return found


def _check_verdicts(items: list[Rehearsal], out: Path) -> None:
    """The report over the rehearsed runs: where paper_results.yaml has a cell for a paper model's preset, the report
    must set one of the run's scores against it (a verdict, not "n/a"): a preset whose data, split or metric no
    longer meets its paper's table fails here, not after the real run."""
    from reproductions import paper_results

    from .report import build_report

    done = [i for i in items if i.status == "ok"]
    if not done:
        return
    report = build_report([out / "runs"], out / "report", with_tests=False)
    cells = {(c.model, c.preset) for c, _ in paper_results.all_cells()}
    for item in done:
        if registry.get(item.name).role != "paper":
            continue
        rows = [r for s in report["sections"] if (s["paper"], s["preset"]) == (item.name, item.preset)
                for r in s["rows"]]
        judged = [r for r in rows if r["verdict"] in VERDICTS]  # the rows set against a cell of the paper's table
        item.checks["verdict"] = "; ".join(f"{r['split']} {r['metric']} {r['ours']['mean']:.2f} vs paper "
                                           f"{r['paper']['value']:g}: {r['verdict']}" for r in judged)
        if (item.name, item.preset) in cells and not judged:
            shown = "; ".join(dict.fromkeys(r["verdict"] for r in rows)) or "no row"
            item.status = "failed"
            item.error = (f"the report set no score of {item.name} {item.preset} against the paper's table "
                          f"({shown}): check the preset's data against its paper_results.yaml")


def probe_step_time(item: Rehearsal, out: Path, steps: int, user: list[str]) -> None:
    """The full-size preset for `steps` optimiser steps on the rehearsal's local data (no scoring): seconds per
    step, and the device-hours that projects over the preset's budget. The first steps' start-up is included, so
    the projection errs high; the local data's vocabulary is smaller than the real one."""
    repro = registry.get(item.name)
    cfg = repro.load_config(item.preset, user)
    run_dir = out / "probe" / f"{item.name}-{item.preset}"
    shutil.rmtree(run_dir, ignore_errors=True)
    sets = [f"train.max_steps={steps}", f"train.resume_every_n_steps={steps + 1}"]
    sets += [s for s in item.overrides if s.split("=")[0] in ("data.source", "data.karpathy_json", "data.images_dir",
                                                                "data.encoder_weights")]
    sets.append("train.val_every_n_batches=1000000")  # no validation inside the probe's steps
    command = _cli("train", item.name, "--preset", item.preset, "--run-dir", str(run_dir), "--devices",
                   str(item.devices), "--no-evaluate", *[a for s in sets + user for a in ("--set", s)])
    done = _launch(command, out / "logs" / f"probe-{item.name}-{item.preset}.log")
    if done.returncode != 0:
        item.probe = {"error": _last_line(done.stderr)}
        return
    run = rundir.RunDir(run_dir)
    training = run.metrics()["training"]
    per_step = training["train_time_s"] / max(training["steps"], 1)
    budget = cfg.train.max_steps if cfg.train.max_steps > 0 else None
    item.probe = {"steps": training["steps"], "seconds_per_step": round(per_step, 3),
                  "accelerator": training.get("accelerator"), "devices": training.get("devices"),
                  "vocab_sizes": run.provenance.get("vocab_sizes"),
                  "budget_steps": budget,
                  "projected_device_hours": round(per_step * budget * item.devices / 3600, 1) if budget else None}


# ------------------------------------------------------------------------------------------- the command


def rehearse(presets: list[str], only: list[str] | None = None, out: Path | str | None = None, devices: int = 1,
             overrides: list[str] | tuple = (), probe_steps: int | None = None,
             console: Console | None = None) -> list[Rehearsal]:
    """Rehearse every run of `presets` (paper models and their baselines); raise AttnreproError in one line when
    any failed. OUT/rehearsal.json holds each run's checks; OUT/logs/ each run's output."""
    from . import tables

    console = console or tables.console()
    not_paper = [p for p in presets if not p.startswith("paper")]
    if not_paper:
        raise AttnreproError(f"--rehearse is for the paper presets, not {', '.join(not_paper)}: leave --preset out "
                             f"for all of them, or name some ({', '.join(paper_presets(only))})")
    out = Path(out or "runs/rehearsal")
    user = list(overrides)
    if probe_steps is None:
        import torch

        probe_steps = 10 if torch.cuda.is_available() else 0
    items = [Rehearsal(name, preset, devices=devices) for name, preset in rehearsal_runs(presets, only)]
    console.print(f"rehearsal of {len(items)} runs ({', '.join(presets)}) on {devices} process(es) each, in {out}; "
                  f"each: a miniature killed after step {KILL_AT}, resumed, scored and judged", highlight=False,
                  soft_wrap=True)
    for k, item in enumerate(items, 1):
        reason = _skip_reason(item.name, item.preset, user)
        if reason:
            item.status, item.error = "skipped", reason
        else:
            rehearse_one(item, out, user)
        console.print(f"[{k}/{len(items)}] {item.name} {item.preset}: {item.status}"
                      + (f" ({item.minutes} min)" if item.minutes is not None else "")
                      + (f": {item.error}" if item.error else ""), highlight=False, soft_wrap=True, markup=False)
    _check_verdicts(items, out)
    if probe_steps:
        for item in items:
            if item.status == "ok":
                console.print(f"probe: {item.name} {item.preset}, full size, {probe_steps} steps", highlight=False,
                              markup=False)
                probe_step_time(item, out, probe_steps, user)
    atomic_write_json(out / "rehearsal.json", {"presets": presets, "devices": devices, "overrides": user,
                                               "probe_steps": probe_steps,
                                               "runs": [dataclasses.asdict(i) for i in items]})
    _table(items, console)
    if probe_steps:
        _probe_table(items, console)
    else:
        console.print("step times not measured (no GPU here): --probe-steps N measures them on this machine",
                      highlight=False)
    failed = [i for i in items if i.status == "failed"]
    if failed:
        raise AttnreproError(f"rehearsal failed for {len(failed)} of {len(items)} runs; {failed[0].name} "
                             f"{failed[0].preset}: {failed[0].error} (each run: {out / 'rehearsal.json'}, logs in "
                             f"{out / 'logs'})")
    return items


def _scored_text(scored: dict) -> str:
    return "; ".join(f"{split} " + " ".join(f"{k} {v:.2f}" for k, v in scores.items())
                     for split, scores in scored.items())


def _table(items: list[Rehearsal], console: Console) -> None:
    columns = [Col("model"), Col("preset"), Col("data", "text", optional=True), Col("processes", "text"),
               Col("kill, resume", "text", optional=True), Col("averaged", "number", optional=True),
               Col("scored", "text", optional=True), Col("verdict", "text", optional=True), Col("minutes", "number"),
               Col("result")]
    rows = []
    for i in items:
        c = i.checks
        rows.append([i.name, i.preset, i.data, str(i.devices) + (f" x {c['accumulation']} accumulated"
                                                                   if c.get("accumulation", 1) > 1 else ""),
                     f"killed after step {c['killed at step']}, resumed ({c.get('resumed from', '?')})"
                     if "killed at step" in c else "",
                     str(c.get("averaged", "")), _scored_text(c.get("scored", {})), c.get("verdict", ""),
                     "" if i.minutes is None else f"{i.minutes:.1f}", i.status])
    print_table(console, "rehearsal: each run's whole path at miniature scale", columns, rows)
    reasons: dict[str, list[str]] = {}
    for i in items:
        if i.error:
            reasons.setdefault(f"{i.status}: {i.error}", []).append(f"{i.name} {i.preset}")
    for reason, runs in reasons.items():  # each reason once, with the runs it stopped
        console.print(f"{', '.join(runs)}: {reason}", highlight=False, soft_wrap=True, markup=False)


def _probe_table(items: list[Rehearsal], console: Console) -> None:
    columns = [Col("model"), Col("preset"), Col("devices", "number"), Col("s/step", "number"),
               Col("budget steps", "number"), Col("device-hours", "number"), Col("note", "text", optional=True)]
    rows = []
    for i in items:
        p = i.probe
        if not p:
            continue
        if "error" in p:
            rows.append([i.name, i.preset, str(i.devices), "", "", "", p["error"]])
            continue
        rows.append([i.name, i.preset, str(p["devices"]), f"{p['seconds_per_step']:.3f}",
                     str(p["budget_steps"] or "epochs"),
                     "" if p["projected_device_hours"] is None else f"{p['projected_device_hours']:.1f}",
                     f"{p['accelerator']}, {p['steps']} steps incl. start-up; local vocabularies {p['vocab_sizes']}"])
    print_table(console, "projected device-hours: measured seconds per step x the preset's steps x devices",
                columns, rows)
