"""Attention variants behind one signature: `forward(query, keys, values, mask) -> (context, weights)`.

query (B, Dq) for one decoder step; keys (B, S, Dk); values (B, S, Dv); mask (B, S), True where a
position may be attended. Returns context (B, Dv) and weights (B, S) that sum to 1 over the unmasked
positions and are exactly 0 on the masked ones.
"""

from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

# The kernels `F.scaled_dot_product_attention` may pick on a GPU. Not cuDNN's: it builds a graph for every new
# shape (hundreds of milliseconds each), and batches bucketed by length bring new shapes all through training.
# On an H100 the cpu-size Transformer's bf16 step ran at 32.6k target tokens/s before this restriction and at
# 106.6k after it (benchmarks/throughput.py; benchmarks/results/throughput-cuda/).
GPU_ATTENTION_KERNELS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """softmax over the last dim with masked positions at exactly 0 (mask None: every position counts);
    computed in fp32 (bf16 under autocast)."""
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
    return torch.softmax(scores if mask is None else scores.masked_fill(~mask, float("-inf")), dim=-1)


def weighted_sum(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """sum_j weights_j values_j: weights (B, S), values (B, S, Dv) -> (B, Dv)."""
    return torch.bmm(weights.unsqueeze(1).to(values.dtype), values).squeeze(1)


def _check(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> None:
    assert query.dim() == 2 and keys.dim() == 3 and values.dim() == 3, (query.shape, keys.shape, values.shape)
    assert mask.shape == keys.shape[:2] == values.shape[:2], (mask.shape, keys.shape, values.shape)


class AdditiveAttention(nn.Module):
    """Bahdanau et al. 2014 (arXiv:1409.0473v7), §3.1 and App. A.1.2:
    e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j),  alpha_ij = softmax_j(e_ij) (Eq. 6),  c_i = sum_j alpha_ij h_j (Eq. 5).
    """

    def __init__(self, query_dim: int, key_dim: int, hidden: int):
        super().__init__()
        self.W_a = nn.Linear(query_dim, hidden, bias=False)
        self.U_a = nn.Linear(key_dim, hidden, bias=False)
        self.v_a = nn.Linear(hidden, 1, bias=False)

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """U_a h_j does not depend on the decoder step: compute it once per sentence. (B, S, hidden)"""
        return self.U_a(keys)

    def score(self, query: torch.Tensor, projected_keys: torch.Tensor) -> torch.Tensor:
        """e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j): query (B, Dq), projected_keys (B, S, hidden) -> (B, S)."""
        return self.v_a(torch.tanh(self.W_a(query).unsqueeze(1) + projected_keys)).squeeze(-1)

    def forward(self, query, keys, values, mask, projected_keys: torch.Tensor | None = None):
        _check(query, keys, values, mask)
        if projected_keys is None:
            projected_keys = self.project_keys(keys)
        weights = masked_softmax(self.score(query, projected_keys), mask)  # (B, S)
        return weighted_sum(weights, values), weights


class DotAttention(nn.Module):
    """Luong et al. 2015 'general' score q^T W k (W = identity when dims match and `general` is False);
    `scaled` divides by sqrt(d_k) as in Vaswani et al. 2017, Eq. 1."""

    def __init__(self, query_dim: int, key_dim: int, general: bool = False, scaled: bool = False):
        super().__init__()
        if not general and query_dim != key_dim:
            raise ValueError("plain dot attention needs query_dim == key_dim; use general=True")
        self.W = nn.Linear(query_dim, key_dim, bias=False) if general else nn.Identity()
        self.scale = 1.0 / math.sqrt(key_dim) if scaled else 1.0

    def forward(self, query, keys, values, mask):
        _check(query, keys, values, mask)
        scores = torch.bmm(keys, self.W(query).unsqueeze(-1)).squeeze(-1) * self.scale  # (B, S)
        weights = masked_softmax(scores, mask)
        return weighted_sum(weights, values), weights


def scaled_dot_product(q, k, v, mask=None, dropout: nn.Module | None = None):
    """Vaswani et al. 2017 (arXiv:1706.03762v7), Eq. 1: Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V.

    q (..., T, d_k), k (..., S, d_k), v (..., S, d_v); mask broadcastable to (..., T, S), True = may attend.
    Returns (..., T, d_v) and the weights (..., T, S). The explicit form, for when the weights are wanted;
    `MultiHeadAttention` otherwise calls the fused `F.scaled_dot_product_attention`, which computes the same.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (..., T, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # -inf exists in bf16 too, unlike -1e9 in fp16
    # softmax statistics in fp32 under bf16 (float64 stays float64)
    weights = torch.softmax(scores.to(torch.promote_types(scores.dtype, torch.float32)), dim=-1).to(v.dtype)
    return (dropout(weights) if dropout is not None else weights) @ v, weights


class MultiHeadAttention(nn.Module):
    """§3.2.2: MultiHead(Q, K, V) = Concat(head_1..head_h) W^O, head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V),
    with d_k = d_v = d_model / h. The sequence form of the shared signature: query (B, T, d_model),
    keys/values (B, S, d_model), mask (B, T or 1, S) -> (B, T, d_model), weights (B, h, T, S).

    Heads run through `F.scaled_dot_product_attention` (flash / memory-efficient kernels on GPUs, a fused
    kernel on CPUs), which never forms the weights: they come back as None unless `need_weights=True`,
    which takes the explicit path of Eq. 1 (figures, alignments). `is_causal=True` stands for the decoder's
    causal mask (§3.2.3) without building it. `forward_heads` takes already projected heads, so that a
    decoder can cache keys and values (`project_kv`) across steps.
    """

    def __init__(self, d_model: int, heads: int, dropout: float = 0.0):
        super().__init__()
        assert d_model % heads == 0, "d_model must be divisible by the number of heads"
        self.heads, self.d_k = heads, d_model // heads
        self.W_q = nn.Linear(d_model, d_model)
        self.W_k = nn.Linear(d_model, d_model)
        self.W_v = nn.Linear(d_model, d_model)
        self.W_o = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.record: list[torch.Tensor] | None = None  # set by `record_attention`: every pass's weights go here

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.heads, self.d_k).transpose(1, 2)  # (B, h, L, d_k)

    def project_kv(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """keys, values (B, S, d_model) -> K W^K, V W^V split into heads, each (B, h, S, d_k)."""
        return self._split(self.W_k(keys)), self._split(self.W_v(values))

    def forward(self, query, keys, values, mask=None, need_weights: bool = True, is_causal: bool = False):
        return self.forward_heads(query, *self.project_kv(keys, values), mask, need_weights, is_causal)

    def forward_heads(self, query, k, v, mask=None, need_weights: bool = True, is_causal: bool = False):
        """query (B, T, d_model), k/v (B, h, S, d_k) -> (B, T, d_model), weights (B, h, T, S) or None."""
        batch, length, _ = query.shape
        q = self._split(self.W_q(query))  # (B, h, T, d_k)
        if mask is not None:
            mask = mask.unsqueeze(1)  # (B, 1, T or 1, S): the same for every head
        if is_causal:
            assert mask is None and length == k.size(2), "is_causal stands for the whole square causal mask"
        # PyTorch's CPU flash-attention kernel is slow in bf16 (its backward took 5x the fp32 time in
        # benchmarks/throughput.py), while bf16 matrix products are fast there: CPUs under bf16 take Eq. 1 as written.
        if need_weights or self.record is not None or (q.device.type == "cpu" and q.dtype == torch.bfloat16):
            if is_causal:
                mask = torch.ones(length, length, dtype=torch.bool, device=query.device).tril()
            out, weights = scaled_dot_product(q, k, v, mask, self.dropout)  # (B, h, T, d_k), (B, h, T, S)
            if self.record is not None:
                self.record.append(weights)
            weights = weights if need_weights else None
        else:
            with sdpa_kernel(GPU_ATTENTION_KERNELS) if q.is_cuda else nullcontext():
                out = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=mask, dropout_p=self.dropout.p if self.training else 0.0, is_causal=is_causal
                )
            weights = None
        out = out.transpose(1, 2).reshape(batch, length, self.heads * self.d_k)  # Concat(head_1..head_h)
        return self.W_o(out), weights


@contextmanager
def record_attention(module: nn.Module):
    """Within the block, every `MultiHeadAttention` inside `module` keeps the weights (B, h, T, S) of each pass
    (through Eq. 1 as written, the fused kernels never forming them) in a dict by the attention's module name,
    e.g. {"encoder.0.self_attn": [weights of the first pass, ...]}: every layer and head, for the figures."""
    records: dict[str, list[torch.Tensor]] = {}
    hooked = [(name, m) for name, m in module.named_modules() if isinstance(m, MultiHeadAttention)]
    for name, attention in hooked:
        attention.record = records.setdefault(name, [])
    try:
        yield records
    finally:
        for _, attention in hooked:
            attention.record = None
