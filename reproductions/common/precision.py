"""`train.precision: auto`: the fastest numerically safe precision the training device has.

bf16-mixed (Lightning's autocast: matrix products in bfloat16, weights, optimiser state, loss and softmax
statistics in float32) where the hardware multiplies bf16 natively: CUDA devices with bf16 (compute
capability 8.0+) and CPUs with AVX512-BF16 or AMX. Everywhere else 32-true: on a CPU without those
instructions bf16 is emulated and slower than fp32. bf16 keeps fp32's exponent range, so unlike fp16 it
needs no loss scaling; masks use -inf, which bf16 represents.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

AUTO = "auto"
# Lightning's names; "auto" resolves to one of the first two.
PRECISIONS = ("bf16-mixed", "32-true", "16-mixed", "bf16-true", "64-true", AUTO)


def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX tiles (Intel Cooper Lake, Sapphire Rapids and later; AMD Zen 4 and later)."""
    if not hasattr(torch.cpu, "_is_amx_tile_supported"):  # torch < 2.3 cannot tell
        return False
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def cuda_has_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def training_device(accelerator: str = "auto") -> str:
    """The device type Lightning's `accelerator` will train on: cuda or cpu (others: their own name)."""
    if accelerator in ("auto", "gpu"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return accelerator


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """`train.precision` -> the Lightning precision to train with; `auto` picks by hardware."""
    if precision not in PRECISIONS:
        raise ValueError(f"train.precision={precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision != AUTO:
        return precision
    device = training_device(accelerator)
    if device == "cuda":
        return "bf16-mixed" if cuda_has_bf16() else "32-true"
    if device == "cpu":
        return "bf16-mixed" if cpu_has_bf16() else "32-true"
    return "32-true"


def autocast(precision: str, device: torch.device | str):
    """The autocast context of a resolved precision for inference on `device` (decoding, benchmarks)."""
    device_type = torch.device(device).type
    if precision == "bf16-mixed":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    if precision == "16-mixed":
        return torch.autocast(device_type, dtype=torch.float16)
    return nullcontext()
