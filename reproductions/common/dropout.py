"""Dropout with a cheaper mask on the CPU; `nn.Dropout` everywhere else.

On the CPU `nn.Dropout` draws one Bernoulli variable per element (`aten::bernoulli_`, one thread), which a one-off
torch.profiler run of the `cpu` Transformer's bf16 step found to be a large share of it. Here the mask comes from
16-bit slices of 64-bit random integers, a quarter of the generator calls; the effect is measured by `python
benchmarks/throughput.py --models vaswani2017 --sizes cpu` (vaswani2017 README). An element is kept when its 16
bits reach a threshold, so the drop probability is p rounded to a multiple of 1/65536 (0.1 becomes 0.100006) and
the kept elements are scaled by 1 / (1 - that probability): the expectation is unchanged, as with `nn.Dropout`. The
draws come from torch's default generator, so seeding and the resumable RNG state work as before. Other devices
(CUDA's fused dropout is fast) and evaluation use `nn.Dropout` itself.
"""

from __future__ import annotations

import torch
from torch import nn

_LEVELS = 1 << 16


def quantised_p(p: float) -> float:
    """The drop probability the CPU mask realises: p rounded to a multiple of 1/65536."""
    return round(p * _LEVELS) / _LEVELS


def cpu_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """x with each element zeroed with probability `quantised_p(p)` and the others scaled to keep the mean."""
    levels = round(quantised_p(p) * _LEVELS)
    if levels == 0:
        return x
    if levels >= _LEVELS:
        return x * 0
    n = x.numel()
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
    bits = words.view(torch.int16)[:n].view(x.shape)  # uniform on [-32768, 32767]
    keep = bits >= levels - _LEVELS // 2  # P(drop) = levels / 65536
    return x * (keep.to(x.dtype) * (_LEVELS / (_LEVELS - levels)))


class Dropout(nn.Dropout):
    """`nn.Dropout` (same argument, no parameters, same checkpoints) with `cpu_dropout`'s mask on the CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.p > 0 and x.device.type == "cpu" and not self.inplace:
            return cpu_dropout(x, self.p)
        return super().forward(x)
