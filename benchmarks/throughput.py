"""Throughput against the hardware's own limit, every number a ratio within one run on one machine.

Measures, on the device at hand (CUDA when present, else the CPU), unchanged on either:
- the machine's matrix-product rate in fp32 and bf16 (square products, TFLOP/s);
- training target tokens/s of each translation model at `cpu` and `paper` sizes and each captioner, in fp32
  and in the `auto` precision (common/precision.py), with the fraction of the matching matrix rate reached
  (matrix-product FLOPs per target token from FlopCounterMode, forward and backward);
- with `--checkpoint RUN_DIR` (a trained translation model, repeatable): decoding sentences/s of a test split at
  beam 5, beam 4 and greedy in fp32 and auto precision with the key/value cache, its sacreBLEU, and beam 5
  through the uncached path (every prefix recomputed) on the first `--uncached-limit` sentences, against the
  cached path on the same sentences; the agreement of their hypotheses.

A training measurement is the model's own step (forward, per-token loss in fp32, backward, gradient clipping,
the configured optimiser; fused Adam on CUDA) on real Multi30k batches of the `cpu` preset's data (paper-size
models keep that data and batch budget: on one machine the batch size is a choice, the model size is what is
measured), after warm-up steps, timed with the device synchronised only at both ends. Captioners train on
random features of the encoder's shape (the features are cached in real runs) and 12-word captions; they
decode with untrained weights, so every caption runs to `decode.max_len` (the worst case).

    python benchmarks/throughput.py --checkpoint runs/transformer-cpu      # about 10 minutes on 2 CPU cores
    python benchmarks/throughput.py --models vaswani2017 --sizes cpu --seconds 5   # a quick look
    python benchmarks/throughput.py --models vaswani2017 --sizes paper --max-tokens 25000 --compile --profile 3
                                          # the GPU targets, at the paper's batch, with where the time goes

Targets: the cpu-size Transformer in auto precision >= 1.8x its fp32 tokens/s (on a CPU with
AVX512-BF16/AMX); a trained cpu-preset Transformer decodes test_2016_flickr at beam 5 at >= 40 sentences/s and
>= 3x its uncached path; on an H100/H200-class GPU paper-base bf16 >= 3x its fp32 tokens/s and >= 35% of the
measured bf16 matrix rate.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import time
from pathlib import Path

import torch
from rich.console import Console

from harness.benchmark import provenance
from harness.hardware import matmul_rates, sync, timed_steps
from harness.tables import Col, print_table
from reproductions import registry, tasks
from reproductions.common.data.sources import cache_root
from reproductions.common.data.vocab import PAD_ID
from reproductions.common.flops import flops_per_target_token
from reproductions.common.io import atomic_write_json
from reproductions.common.optim import configure_optimizers
from reproductions.common.precision import autocast, resolve_precision
from reproductions.common.rundir import cpu_name

TRANSLATION = ["bahdanau2014", "cho2014", "vaswani2017"]
CAPTIONING = ["xu2015", "vinyals2015"]
TARGETS = {"cpu_transformer_auto_over_fp32": 1.8, "decode_beam5_sentences_per_s": 40.0,
           "decode_beam5_cached_over_uncached": 3.0, "gpu_paper_transformer_bf16_over_fp32": 3.0,
           "gpu_paper_transformer_fraction_of_bf16_matmul": 0.35}


def translation_setup(name: str, size: str, cache: dict, max_tokens: int | None = None) -> tuple:
    """(config, batches on the CPU, vocab sizes): the model section of preset `size`, the `cpu` preset's data
    (with `max_tokens` per batch instead of the preset's when given)."""
    repro = registry.get(name)
    cfg = repro.load_config("cpu")
    if size != "cpu":
        sized = repro.load_config(size)
        cfg.model, cfg.optim = sized.model, sized.optim
    if max_tokens:
        cfg.data.max_tokens = max_tokens
    key = str(cfg.data)
    if key not in cache:
        data = tasks.get("translation").data_module(cfg, 1, cache_root())
        data.load()
        batches = list(itertools.islice(iter(data.train_dataloader()), 24))
        cache[key] = (batches, len(data.src_vocab), len(data.tgt_vocab))
    return repro, cfg, *cache[key]


class Trainer:
    """One model's training step in one precision, on batches already on the device."""

    def __init__(self, model, cfg, batches: list[dict], keys: tuple[str, str, str], precision: str,
                 device: torch.device, compiled: bool = False):
        self.model, self.keys, self.precision, self.device = model.to(device).train(), keys, precision, device
        self.compiled = compiled
        if compiled:  # as `train.compile`: in place; the warm-up steps compile
            self.model.compile()
        self.batches = [{k: v.to(device) for k, v in b.items() if isinstance(v, torch.Tensor)} for b in batches]
        self.tokens = [int((b[keys[2]] != PAD_ID).sum()) for b in self.batches]  # counted before any clock starts
        setup = configure_optimizers(cfg.optim, model.parameters())
        self.optimizer = setup["optimizer"] if isinstance(setup, dict) else setup
        self.clip = getattr(cfg.optim, "clip_norm", None)
        self.steps = self.tokens_done = 0

    def step(self) -> None:
        import torch.nn.functional as F

        i = self.steps % len(self.batches)
        batch, (src, tgt_in, tgt_out) = self.batches[i], self.keys
        with autocast(self.precision, self.device):
            logits, _ = self.model(batch[src], batch[tgt_in])
            loss_sum = F.cross_entropy(logits.flatten(0, 1).float(), batch[tgt_out].flatten(),
                                       ignore_index=PAD_ID, reduction="sum")
        (loss_sum / self.tokens[i]).backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1
        self.tokens_done += self.tokens[i]


def train_rates(trainers: list[Trainer], seconds: float, rounds: int = 4, warmup: int = 2) -> list[dict]:
    """Tokens/s of each trainer, measured in alternating slices (`rounds` each), so that a change in the
    machine's load during the measurement affects every precision alike. A compiled trainer warms up on every
    batch once: a batch of a shape not seen before can recompile (the second shape does, to dynamic sizes; later
    ones do where they break an equality or alignment the compiled code assumed, such as equal source and target
    lengths, or a target length divisible by 8), which must not happen on the clock."""
    for trainer in trainers:  # warm-up: allocator, kernel selection, lazy optimiser state, compilation
        for _ in range(max(warmup, len(trainer.batches)) if trainer.compiled else warmup):
            trainer.step()
    totals = [[0, 0, 0.0] for _ in trainers]  # steps, tokens, seconds
    for _ in range(rounds):
        for trainer, total in zip(trainers, totals):
            before = trainer.tokens_done
            steps, elapsed = timed_steps(trainer.step, trainer.device, seconds / rounds, min_steps=1)
            total[0] += steps
            total[1] += trainer.tokens_done - before
            total[2] += elapsed
    rows = []
    plain = trainers[0]  # FLOPs per token are the same in every variant; counted on an uncompiled one
    flops = flops_per_target_token(plain.model, plain.batches[0], plain.keys)
    for trainer, (steps, tokens, elapsed) in zip(trainers, totals):
        rate = tokens / elapsed
        rows.append({"precision": trainer.precision, "compiled": trainer.compiled, "steps": steps,
                     "seconds": round(elapsed, 2),
                     "target_tokens_per_s": round(rate, 1), "flops_per_target_token": round(flops),
                     "achieved_tflops": round(flops * rate / 1e12, 4)})
    return rows


def profile_steps(trainer: Trainer, steps: int, top: int = 25) -> dict:
    """torch.profiler over `steps` training steps of one trainer (after the measurements: warm): the operators
    with the most device time (CPU time on a CPU), and whether the step waits for the host. `busy_fraction` is
    the device's summed kernel time over the wall time; well below 1 means launches and Python, not
    arithmetic, bound the step."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = trainer.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sync(trainer.device)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            trainer.step()
        sync(trainer.device)
        wall = time.perf_counter() - start

    def self_time(event) -> float:  # microseconds; the device's where there is one
        if not cuda:
            return event.self_cpu_time_total
        return getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0.0)

    events = prof.key_averages()
    # Kernels are events of their own beside the operators that launched them: the device's busy time is the
    # kernels' alone (counting both would count it twice); the ranking names the operators.
    kernels = [e for e in events if getattr(e, "device_type", None) == DeviceType.CUDA]
    busy = sum(self_time(e) for e in kernels) / 1e6
    operators = [e for e in events if e not in kernels] if cuda else list(events)
    ranked = sorted(operators, key=self_time, reverse=True)[:top]
    whole = max(busy if cuda else wall * torch.get_num_threads(), 1e-9)  # seconds the shares are of
    return {"precision": trainer.precision, "compiled": trainer.compiled, "steps": steps,
            "wall_ms_per_step": round(1000 * wall / steps, 2),
            "device_busy_ms_per_step": round(1000 * busy / steps, 2) if cuda else None,
            "busy_fraction": round(busy / wall, 3) if cuda else None,
            "top": [{"op": e.key, "calls_per_step": round(e.count / steps, 1),
                     "ms_per_step": round(self_time(e) / 1000 / steps, 3),
                     "share": round(self_time(e) / 1e6 / whole, 4)}
                    for e in ranked]}


def caption_setup(name: str, size: str, batch: int = 64, words: int = 12) -> tuple:
    from reproductions.captioning.encoders import ENCODERS

    repro = registry.get(name)
    cfg = repro.load_config(size)
    vocab = 2600  # Flickr8k words seen at least 5 times (about 2.6k)
    spec = ENCODERS[cfg.data.encoder]
    gen = torch.Generator().manual_seed(0)
    positions, dim = spec.grid * spec.grid, spec.dim
    batches = []
    for _ in range(4):
        captions = torch.randint(4, vocab, (batch, words + 1), generator=gen)
        batches.append({"features": torch.randn(batch, positions, dim, generator=gen),
                        "captions_in": captions[:, :-1], "captions_out": captions[:, 1:]})
    return repro, cfg, batches, vocab


def decode_rates(target: Path, split: str, device: torch.device, precisions: list[str], uncached_limit: int,
                 console: Console, limit: int | None = None, max_len_b: int | None = None) -> dict:
    from harness.evaluate import locate
    from reproductions.loading import load_model
    from reproductions.translation.data.files import load_split
    from reproductions.translation.decoding import translate_texts
    from reproductions.translation.metrics import corpus_scores

    _, ckpt = locate(target)
    loaded = load_model(ckpt, str(device))
    cfg = loaded.cfg
    data = load_split(cfg.data.dataset, cfg.data.pair, split, limit)
    srcs, refs = list(data["src"]), list(data["tgt"])
    if max_len_b is not None:  # e.g. an under-trained model, whose hypotheses would run to the length limit
        cfg.decode.max_len_b = max_len_b

    def run(texts, beam, precision, cached=True):
        decode = type(cfg.decode)(**{**vars(cfg.decode), "beam": beam})
        sync(device)
        start = time.perf_counter()
        hyps, _ = translate_texts(loaded.model, loaded.src_vocab, loaded.tgt_vocab, texts, decode, device,
                                  progress=False, precision=precision, cached=cached)
        sync(device)
        return hyps, time.perf_counter() - start

    rows = []
    for beam, precision in itertools.product([5, 4, 1], precisions):
        hyps, seconds = run(srcs, beam, precision)
        rows.append({"beam": beam, "precision": precision, "cached": True, "sentences": len(srcs),
                     "seconds": round(seconds, 2), "sentences_per_s": round(len(srcs) / seconds, 2),
                     "bleu": corpus_scores(hyps, refs)["bleu"]})
        console.print(rows[-1])
    subset = srcs[:uncached_limit]
    same = {}
    for cached in (True, False):
        hyps, seconds = run(subset, 5, "32-true", cached)
        same[cached] = hyps
        rows.append({"beam": 5, "precision": "32-true", "cached": cached, "sentences": len(subset),
                     "seconds": round(seconds, 2), "sentences_per_s": round(len(subset) / seconds, 2)})
        console.print(rows[-1])
    agree = sum(a == b for a, b in zip(same[True], same[False])) / max(len(subset), 1)
    return {"checkpoint": str(ckpt), "reproduction": loaded.reproduction, "split": split,
            "decode_config": vars(cfg.decode), "rows": rows, "uncached_subset_agreement": round(agree, 4),
            "cached_over_uncached_beam5": round(rows[-2]["sentences_per_s"] / rows[-1]["sentences_per_s"], 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", default=TRANSLATION + CAPTIONING,
                        help="models to train (none: only the matrix rates and decoding)")
    parser.add_argument("--sizes", nargs="+", default=["cpu", "paper"])
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="timed seconds per training measurement (in 4 slices, alternating the precisions)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before each training measurement")
    parser.add_argument("--max-tokens", type=int,
                        help="tokens per translation batch (default: the cpu preset's data.max_tokens)")
    parser.add_argument("--compile", action="store_true",
                        help="also measure each model compiled (train.compile) in the auto precision; it warms up on "
                             "every batch once, which compiles it for each new shape")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="after the measurements, profile STEPS steps of each model in the auto precision (and "
                             "compiled, with --compile): the operators with the most device time, and how busy the "
                             "device was (a one-off diagnosis; the JSON's `profiles`)")
    parser.add_argument("--checkpoint", type=Path, action="append", default=[],
                        help="a trained translation run (directory or .ckpt) to measure decoding with")
    parser.add_argument("--split", default="test_2016_flickr")
    parser.add_argument("--limit", type=int, help="decode only the split's first N sentences (default: all)")
    parser.add_argument("--max-len-b", type=int, help="override the checkpoint's decode.max_len_b")
    parser.add_argument("--uncached-limit", type=int, default=200,
                        help="sentences decoded both ways for the cached/uncached ratio (the uncached path is slow)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads (default: torch's). On a shared, loaded machine 1 thread keeps the "
                             "ratios honest: a descheduled thread stalls every parallel region of the others")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    unknown = [m for m in args.models if m not in TRANSLATION + CAPTIONING]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {TRANSLATION + CAPTIONING}")

    device = torch.device(args.device)
    auto = resolve_precision("auto", device.type)
    precisions = ["32-true"] + ([auto] if auto != "32-true" else [])
    console = Console()
    load_before = os.getloadavg()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or Path("benchmarks/results") / f"throughput-{device.type}" / f"throughput-{stamp}.json"

    matmul = matmul_rates(device, 6.0)
    console.print(f"matrix products on {device}: {matmul}")
    rate_of = {"32-true": matmul["fp32"]["tflops"], "bf16-mixed": matmul["bf16"]["tflops"]}
    if auto not in rate_of:
        parser.error(f"the auto precision here is {auto}, which this benchmark has no matrix rate for")

    training, profiles, cache = [], [], {}
    for name, size in itertools.product(args.models, args.sizes):
        trainers = []
        variants = [(p, False) for p in precisions] + ([(auto, True)] if args.compile else [])
        for precision, compiled in variants:
            torch.manual_seed(0)  # the same initial weights in every precision
            if name in TRANSLATION:
                repro, cfg, batches, src_v, tgt_v = translation_setup(name, size, cache, args.max_tokens)
                model, keys = repro.build(cfg, src_v, tgt_v), ("src", "tgt_in", "tgt_out")
            else:
                repro, cfg, batches, vocab = caption_setup(name, size)
                model, keys = repro.build(cfg, vocab), ("features", "captions_in", "captions_out")
            trainers.append(Trainer(model, cfg, batches, keys, precision, device, compiled))
        params = sum(p.numel() for p in trainers[0].model.parameters())
        for measured in train_rates(trainers, args.seconds * len(trainers), warmup=args.warmup):
            row = {"model": name, "size": size, "parameters": params, **measured}
            row["fraction_of_matmul_rate"] = round(row["achieved_tflops"] / rate_of[row["precision"]], 4)
            training.append(row)
            console.print(row)
        for trainer in trainers if args.profile else []:
            if trainer.precision == auto:
                profiles.append({"model": name, "size": size, **profile_steps(trainer, args.profile)})
                console.print({k: v for k, v in profiles[-1].items() if k != "top"})
                for op in profiles[-1]["top"][:15]:
                    console.print(f"  {op['ms_per_step']:9.3f} ms {100 * op['share']:5.1f}%  "
                                  f"x{op['calls_per_step']:<6} {op['op'][:90]}")
        del trainers

    def tokens_per_s(name, size, precision, compiled=False):
        found = [r["target_tokens_per_s"] for r in training
                 if (r["model"], r["size"], r["precision"], r["compiled"]) == (name, size, precision, compiled)]
        return found[0] if found else None

    def over_fp32(compiled: bool) -> dict:
        """model/size -> auto precision's tokens/s (plain or compiled) over plain fp32's."""
        return {f"{r['model']}/{r['size']}": round(tokens_per_s(r["model"], r["size"], auto, compiled)
                                                   / r["target_tokens_per_s"], 2)
                for r in training if r["precision"] == "32-true" and not r["compiled"]}

    ratios = over_fp32(False) if auto != "32-true" else {}
    compiled_ratios = over_fp32(True) if args.compile else {}
    decoding = [decode_rates(c, args.split, device, precisions, args.uncached_limit, console, args.limit,
                             args.max_len_b) for c in args.checkpoint]

    targets = {}
    if "vaswani2017/cpu" in ratios and device.type == "cpu":
        targets["cpu_transformer_auto_over_fp32"] = {"value": ratios["vaswani2017/cpu"],
                                                     "min": TARGETS["cpu_transformer_auto_over_fp32"]}
    for d in decoding:
        if d["reproduction"] == "vaswani2017" and d["split"] == "test_2016_flickr":
            best = max(r["sentences_per_s"] for r in d["rows"] if r["beam"] == 5 and r["cached"])
            targets["decode_beam5_sentences_per_s"] = {"value": best, "min": TARGETS["decode_beam5_sentences_per_s"]}
            targets["decode_beam5_cached_over_uncached"] = {"value": d["cached_over_uncached_beam5"],
                                                            "min": TARGETS["decode_beam5_cached_over_uncached"]}
    paper = [r for r in training if (r["model"], r["size"], r["precision"]) == ("vaswani2017", "paper", "bf16-mixed")]
    if device.type == "cuda" and paper and "vaswani2017/paper" in ratios:
        # the faster of plain and compiled bf16 (compiling is the user's option `train.compile`), said which
        best = max(paper, key=lambda r: r["target_tokens_per_s"])
        ratio = (compiled_ratios if best["compiled"] else ratios)["vaswani2017/paper"]
        targets["gpu_paper_transformer_bf16_over_fp32"] = {
            "value": ratio, "min": TARGETS["gpu_paper_transformer_bf16_over_fp32"], "compiled": best["compiled"]}
        key = "gpu_paper_transformer_fraction_of_bf16_matmul"
        targets[key] = {"value": best["fraction_of_matmul_rate"], "min": TARGETS[key], "compiled": best["compiled"]}
    for t in targets.values():
        t["met"] = t["value"] >= t["min"]

    result = {
        "benchmark": "throughput",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "auto_precision": auto,
        "config": {"threads": torch.get_num_threads(), "limit": args.limit, "max_len_b": args.max_len_b,
                   "models": args.models, "sizes": args.sizes,
                   "seconds": args.seconds, "warmup": args.warmup, "compile": args.compile,
                   "max_tokens": args.max_tokens, "profile_steps": args.profile,
                   "split": args.split,
                   "uncached_limit": args.uncached_limit, "data": "the cpu preset's Multi30k en-de batches"
                   + (f", {args.max_tokens} tokens each" if args.max_tokens else ""),
                   "torch": torch.__version__},
        **provenance(load_before),
        "matmul": matmul,
        "training": training,
        "auto_over_fp32_tokens_per_s": ratios,
        "compiled_auto_over_fp32_tokens_per_s": compiled_ratios,
        "decoding": decoding,
        "profiles": profiles,
        "targets": targets,
    }
    atomic_write_json(out, result)
    columns = [Col("model"), Col("size"), Col("precision"), Col("tokens/s", "number"), Col("TFLOP/s", "number"),
               Col("of matmul", "number")]
    rows = [[r["model"], r["size"], r["precision"] + (" compiled" if r["compiled"] else ""),
             f"{r['target_tokens_per_s']:.0f}", f"{r['achieved_tflops']:.3f}",
             f"{100 * r['fraction_of_matmul_rate']:.1f}%"] for r in training]
    print_table(console, f"training throughput on {result['device_name']} (auto = {auto})", columns, rows)
    console.print(f"targets: {targets}\nwritten to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
