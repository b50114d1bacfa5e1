"""What the machine can compute, measured in the run that uses it: the matrix-product rates every benchmark
records, and in which ways its runs' arithmetic differs from that of the machine the targets were set on.

The presets stop on steps, so a slower or busier machine trains the same updates and only takes longer; what can
still move a score a little is the arithmetic (`auto` precision is bf16-mixed on a CPU with AVX512-BF16, fp32
without). A run given the opt-in wall-clock cap `train.max_minutes` depends on the machine's speed as well: then
the core count and the matrix rate are compared too, and the benchmark says its verdicts are not comparable.
"""

from __future__ import annotations

import collections
import time

import torch

from reproductions.common.config import parse_override
from reproductions.common.precision import cpu_has_bf16, resolve_precision
from reproductions.common.rundir import cpu_name

# The machine the targets of benchmarks/multi30k.py and flickr8k.py were set and measured on (and the `cpu`
# budgets sized on): a 2-core CPU with AVX512-BF16, whose matrix rates (n = 1024) were measured by
# benchmarks/throughput.py (benchmarks/results/throughput-cpu/throughput-cpu-transformer-training-30s.json).
TARGETS_MACHINE = {"device": "cpu", "cpus": 2, "precision": "bf16-mixed",
                   "matmul_tflops": {"fp32": 0.357, "bf16": 1.326}}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(step, device: torch.device, seconds: float, min_steps: int = 2, ahead: int = 2) -> tuple[int, float]:
    """Run `step` for `seconds` (at least `min_steps` times) -> (steps, seconds). On a GPU the host queues
    up to `ahead` steps before the device has finished them (as a training loop does), and the device is
    synchronised only at both ends and on those events. Unbounded, the host queued far more than a slice's
    worth of an H100's fp32 matrix products: the 6-second matrix-rate measurement had not ended after 45 s."""
    sync(device)
    queued = collections.deque()
    count, start = 0, time.perf_counter()
    while count < min_steps or time.perf_counter() - start < seconds:
        step()
        count += 1
        if device.type == "cuda":
            queued.append(torch.cuda.Event())
            queued[-1].record()
            if len(queued) > ahead:
                queued.popleft().synchronize()
    sync(device)
    return count, time.perf_counter() - start


def matmul_rates(device: torch.device, seconds: float, rounds: int = 4) -> dict:
    """TFLOP/s of square fp32 and bf16 matrix products of a size that fills the device (2 n^3 FLOPs each),
    in alternating slices as the training measurements are."""
    n = 8192 if device.type == "cuda" else 1024
    repeat = 10 if device.type == "cuda" else 1
    operands = {name: [torch.randn(n, n, device=device, dtype=dtype) for _ in range(2)]
                for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    done = {name: [0, 0.0] for name in operands}
    for a, b in operands.values():
        for _ in range(3):
            a @ b
    for _ in range(rounds):
        for name, (a, b) in operands.items():
            def product(a=a, b=b):
                for _ in range(repeat):
                    a @ b
            count, elapsed = timed_steps(product, device, seconds / rounds, min_steps=1)
            done[name][0] += count * repeat
            done[name][1] += elapsed
    return {name: {"n": n, "tflops": round(2 * n**3 * count / elapsed / 1e12, 3)}
            for name, (count, elapsed) in done.items()}


def budget_machine(overrides: list[str] = (), seconds: float = 2.0) -> dict:
    """The training machine of a benchmark, beside TARGETS_MACHINE: device, CPU count, the
    precision the runs train in (`auto` unless `overrides` set train.precision), the matrix rates (`seconds` of
    measuring) and `differs`, each way in which it is not the targets' machine (empty: verdicts comparable)."""
    asked = dict(parse_override(o) for o in overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    here = {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "cpus": torch.get_num_threads() if device.type == "cpu" else None,
        "cpu_bf16": cpu_has_bf16(),
        "precision": resolve_precision(str(asked.get("train.precision", "auto"))),
        "matmul_tflops": {k: v["tflops"] for k, v in matmul_rates(device, seconds).items()},
        # the presets end on steps or epochs, so this machine's speed changes only how long they take; what can
        # still differ from the targets' runs is the arithmetic (device, precision). --set train.max_minutes=M
        # opts into a wall-clock cap, and then the speed matters too.
        "time_budgeted": bool(asked.get("train.max_minutes")),
    }
    if not here["time_budgeted"]:
        keys = ("device", "precision")
    else:
        keys = ("device",) if device.type != TARGETS_MACHINE["device"] else ("cpus", "precision")
    differs = [f"{key} {here[key]} (targets: {TARGETS_MACHINE[key]})" for key in keys
               if here[key] != TARGETS_MACHINE[key]]
    if not differs and here["time_budgeted"]:
        precision = "bf16" if here["precision"] == "bf16-mixed" else "fp32"
        rate, reference = here["matmul_tflops"][precision], TARGETS_MACHINE["matmul_tflops"][precision]
        if rate < 0.75 * reference:  # a slower CPU of the same kind (or a loaded one) trains fewer steps
            differs.append(f"{precision} matrix rate {rate} TFLOP/s (targets: {reference})")
    return {**here, "targets_machine": TARGETS_MACHINE, "differs": differs}


def compared_differences(machine: dict) -> list[str]:
    """How this machine differs from the reference one as a speed-sensitive run sees it (cores, precision, rate),
    whether or not the runs were time-budgeted: what decides if a measured time says anything about the budget."""
    differs = [f"{key} {machine[key]} (targets: {TARGETS_MACHINE[key]})" for key in ("device", "cpus", "precision")
               if machine.get(key) != TARGETS_MACHINE[key]]
    if not differs:
        precision = "bf16" if machine["precision"] == "bf16-mixed" else "fp32"
        rate, reference = machine["matmul_tflops"][precision], TARGETS_MACHINE["matmul_tflops"][precision]
        if rate < 0.75 * reference:
            differs.append(f"{precision} matrix rate {rate} TFLOP/s (targets: {reference})")
    return differs


def budget_warning(machine: dict) -> str | None:
    """One line for the console when a benchmark's runs differ from those its targets were set with."""
    if not machine["differs"]:
        return None
    if not machine.get("time_budgeted", True):
        return ("these runs end on steps or epochs, so this machine's speed does not change what they train; "
                "their arithmetic differs from the targets' runs in: " + "; ".join(machine["differs"])
                + " (scores can move by a little; the verdicts stand)")
    return ("this machine is not the one the time-budgeted targets were set on (" + "; ".join(machine["differs"])
            + "): train.max_minutes caps these runs in wall-clock time, so the scores and verdicts here are not "
              "comparable with the READMEs' records")
