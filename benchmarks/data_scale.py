"""Data-pipeline scale benchmark: the `paper` Transformer preset's preparation of N training pairs.

python benchmarks/data_scale.py --pairs 4500000      (offline; ~25 minutes on 2 CPU cores, see the README)

1. builds a synthetic WMT-like bitext of N pairs offline (not timed as preparation): Multi30k en-de
   training pairs recombined, 1 to 8 of them per pair (mean ~2.2), so that sentences run from 2 to
   ~120 tokens like WMT14's (mean ~30), written as gzipped train.en / train.de;
2. a fresh process runs the full preparation of `vaswani2017 --preset paper` with data.source set to that
   bitext: vocabulary (joint BPE, 37000), tokenise + length filter into the token cache, batch index (epoch
   0's batches and the accumulation for 25000 target tokens per step on 8 GPUs);
3. a second fresh process loads the same preset as another DDP rank would: it maps the cache, builds its
   sampler for rank 1 of 8 and collates 200 batches;
and prints and writes to JSON (benchmarks/results/data-scale/pairs-N.json) the wall time of each stage, the
peak RSS of each process, and the cache's bytes per pair, with the commit, machine and resolved config.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORLD_SIZE = 8  # the paper's 8 P100s: the batch index and the mapping process act as ranks of an 8-GPU job


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def rss_parts_mb() -> dict:
    """Resident memory now, split as Linux accounts it: anonymous (this process's own heap and arrays) and
    file-backed (pages of mapped files such as the cache: shared by every rank on the node, reclaimable).
    Peak RSS (ru_maxrss) counts both."""
    parts = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("RssAnon:", "RssFile:", "RssShmem:")):
                name, value, _ = line.split()
                parts[name.rstrip(":")] = round(int(value) / 1024)
    return parts


def cpu_seconds() -> float:
    """CPU time of this process, all threads (the tokenizers' Rust threads too): unlike wall time, it does
    not grow when other jobs share the cores."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def synthetic_bitext(pairs: int, folder: Path, seed: int = 0) -> dict:
    """N recombined Multi30k pairs as folder/train.en.gz and train.de.gz."""
    import numpy as np

    from reproductions.translation.data.files import load_split

    train = load_split("multi30k", "en-de", "train")
    src, tgt = list(train["src"]), list(train["tgt"])
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    started, words = time.perf_counter(), 0
    # pieces per pair: 1 + a geometric number (p=0.45), at most 8 -> mean ~2.2 Multi30k sentences
    with gzip.open(folder / "train.en.gz", "wt", compresslevel=1) as en, \
            gzip.open(folder / "train.de.gz", "wt", compresslevel=1) as de:
        for start in range(0, pairs, 100_000):
            n = min(100_000, pairs - start)
            counts = np.minimum(rng.geometric(0.45, n), 8)
            picks = rng.integers(0, len(src), int(counts.sum())).tolist()
            ends = np.cumsum(counts).tolist()
            begin, lines_en, lines_de = 0, [], []
            for end in ends:
                lines_en.append(" ".join(src[i] for i in picks[begin:end]))
                lines_de.append(" ".join(tgt[i] for i in picks[begin:end]))
                begin = end
            words += sum(line.count(" ") + 1 for line in lines_en)
            en.write("\n".join(lines_en) + "\n")
            de.write("\n".join(lines_de) + "\n")
    return {"pairs": pairs, "mean_english_words": round(words / pairs, 1),
            "seconds": round(time.perf_counter() - started, 1),
            "bytes_gz": sum(f.stat().st_size for f in folder.iterdir())}


def paper_config(bitext: Path):
    from reproductions import registry

    return registry.get("vaswani2017").load_config("paper", [f"data.source={bitext}"])


def prepare(bitext: Path) -> dict:
    """The preparing process (rank 0): every stage of the paper preset's data preparation, timed."""
    from reproductions.common.data.batching import TokenBudgetBatchSampler
    from reproductions.common.data.sources import cache_root
    from reproductions.common.data.vocab import vocabs_for_corpus
    from reproductions.translation.data.cache import ensure_cache
    from reproductions.translation.data.corpus import training_bitext
    from reproductions.translation.data.datamodule import TranslationDataModule

    cfg = paper_config(bitext)
    d, stages = cfg.data, {}
    clock, cpu = time.perf_counter(), cpu_seconds()

    def stage(name: str) -> None:
        nonlocal clock, cpu
        stages[name] = {"seconds": round(time.perf_counter() - clock, 1), "cpu_seconds": round(cpu_seconds() - cpu, 1),
                        "peak_rss_mb_so_far": round(peak_rss_mb()), "rss_now_mb": rss_parts_mb(),
                        "load_avg_1min": os.getloadavg()[0]}
        print(f"  {name}: {stages[name]}", file=sys.stderr, flush=True)
        clock, cpu = time.perf_counter(), cpu_seconds()

    corpus = training_bitext(d, cache_root())
    stage("checksum")
    src_vocab, tgt_vocab = vocabs_for_corpus(corpus.chunks, corpus.key, d.vocab, d.vocab_size, d.joint_vocab,
                                             d.vocab_every, cache_root())
    stage("vocabulary")
    cache = ensure_cache(corpus, src_vocab, tgt_vocab, d.max_len, cache_root())
    stage("tokenise_and_filter")
    data = TranslationDataModule(d, seed=1, cache_dir=cache_root())
    data.load()  # everything is cached now: maps the cache and encodes the validation split
    sampler = TokenBudgetBatchSampler(data.train_set.lengths(), max_tokens=d.max_tokens,
                                      bucket_batches=d.bucket_batches, seed=1, world_size=WORLD_SIZE)
    batches = sampler.epoch_length()
    budget = data.step_budget(cfg.train.tokens_per_step, WORLD_SIZE)
    stage("batch_index")
    return {"stages": stages, "peak_rss_mb": round(peak_rss_mb()), "cache": cache.meta | {"path": str(cache.path)},
            "batches_per_rank_per_epoch": batches, "step_budget_8_gpus": budget.as_dict(),
            "step_budget_1_gpu": data.step_budget(cfg.train.tokens_per_step, 1).as_dict()}


def map_as_rank(bitext: Path) -> dict:
    """The second process: what another rank does, with the cache present: map it, sample, collate."""
    from reproductions.common.data.batching import TokenBudgetBatchSampler, collate_pairs
    from reproductions.common.data.sources import cache_root
    from reproductions.translation.data.datamodule import TranslationDataModule

    cfg = paper_config(bitext)
    started = time.perf_counter()
    data = TranslationDataModule(cfg.data, seed=1, cache_dir=cache_root())
    data.load()
    loaded = time.perf_counter()
    sampler = TokenBudgetBatchSampler(data.train_set.lengths(), max_tokens=cfg.data.max_tokens,
                                      bucket_batches=cfg.data.bucket_batches, seed=1, rank=1, world_size=WORLD_SIZE)
    tokens = 0
    for i, indices in enumerate(sampler):
        if i == 200:
            break
        tokens += int((collate_pairs([data.train_set[j] for j in indices])["tgt_out"] != 0).sum())
    return {"load_seconds": round(loaded - started, 1), "sample_and_collate_200_batches_seconds":
            round(time.perf_counter() - loaded, 1), "target_tokens_in_200_batches": tokens,
            "peak_rss_mb": round(peak_rss_mb()), "rss_now_mb": rss_parts_mb()}


def child(role: str, bitext: Path, env: dict) -> dict:
    """Run one role in a fresh Python process; its last stdout line is its JSON result."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--role", role, "--bitext", str(bitext)], env=env,
                          cwd=REPO, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the {role} process failed (exit {proc.returncode})")
    lines = proc.stdout.strip().splitlines()
    return json.loads(lines[-1]) | {"process_wall_seconds": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=500_000)
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "attnrepro-data-scale")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "data-scale")
    parser.add_argument("--keep", action="store_true", help="keep the bitext and cache under --work")
    parser.add_argument("--role", choices=["prepare", "map"], help=argparse.SUPPRESS)
    parser.add_argument("--bitext", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:  # a child process
        result = prepare(args.bitext) if args.role == "prepare" else map_as_rank(args.bitext)
        print(json.dumps(result), flush=True)
        return 0

    sys.path.insert(0, str(REPO))
    from harness.benchmark import provenance
    from reproductions.common.io import atomic_write_json

    load_before = os.getloadavg()
    work = args.work / f"pairs-{args.pairs}"
    shutil.rmtree(work, ignore_errors=True)
    env = {**os.environ, "ATTNREPRO_CACHE": str(work / "cache"), "PYTHONPATH": str(REPO)}
    print(f"building a synthetic bitext of {args.pairs} pairs in {work / 'bitext'}", flush=True)
    bitext = synthetic_bitext(args.pairs, work / "bitext")
    print(f"  {bitext}", flush=True)
    print("preparing (vaswani2017 --preset paper) in a fresh process", flush=True)
    prepared = child("prepare", work / "bitext", env)
    print("mapping the cache as rank 1 of 8 in a second process", flush=True)
    mapped = child("map", work / "bitext", env)
    cache = prepared["cache"]
    cache_bytes = sum(cache["bytes"].values())
    result = {
        "pairs": args.pairs,
        "synthetic_bitext": bitext,
        "preparation_seconds": round(sum(s["seconds"] for s in prepared["stages"].values()), 1),
        "preparation_cpu_seconds": round(sum(s["cpu_seconds"] for s in prepared["stages"].values()), 1),
        "preparing_process": prepared,
        "second_process": mapped,
        "cache_bytes": cache_bytes,
        "cache_bytes_per_pair": round(cache_bytes / cache["pairs_read"], 1),
        "config": {"preset": "vaswani2017 paper", "data": vars(paper_config(work / "bitext").data),
                   "world_size_assumed": WORLD_SIZE},
        **provenance(load_before),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / f"pairs-{args.pairs}.json", result)
    print(f"preparation {result['preparation_seconds']} s ({result['preparation_cpu_seconds']} CPU s), "
          f"peak RSS {prepared['peak_rss_mb']} MB (preparing), "
          f"{mapped['peak_rss_mb']} MB (second process); cache {result['cache_bytes_per_pair']} bytes per pair; "
          f"written to {args.out / f'pairs-{args.pairs}.json'}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
