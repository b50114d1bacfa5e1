"""The Transformer (Vaswani et al. 2017, "Attention Is All You Need", arXiv:1706.03762v7).

Encoder and decoder stacks of N post-norm layers (§3.1): every sub-layer is wrapped as
LayerNorm(x + Dropout(Sublayer(x))) (§5.4); multi-head scaled dot-product attention (Eq. 1, §3.2.2) from
`reproductions.common.attention`; position-wise FFN (Eq. 2); sinusoidal positions (§3.5); one embedding
matrix shared by source, target and the pre-softmax projection, scaled by sqrt(d_model) (§3.4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..common.attention import MultiHeadAttention, record_attention
from ..common.beam import log_softmax_fp32
from ..common.config import ConfigError
from ..common.data.vocab import PAD_ID
from ..common.dropout import Dropout
from ..translation.config import TranslationConfig


@dataclass
class TransformerModelConfig:
    layers: int = 6  # N, Table 3 (base)
    d_model: int = 512
    d_ff: int = 2048
    heads: int = 8  # h; d_k = d_v = d_model / h
    dropout: float = 0.1  # P_drop, §5.4: sub-layer outputs and embeddings + positions
    share_embeddings: bool = True  # §3.4; needs one joint vocabulary
    max_positions: int = 1024


@dataclass
class TransformerTranslationConfig(TranslationConfig):
    model: TransformerModelConfig = field(default_factory=TransformerModelConfig)


def sinusoidal_positions(length: int, d_model: int) -> torch.Tensor:
    """§3.5: PE(pos, 2i) = sin(pos / 10000^(2i / d_model)), PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))."""
    pos = torch.arange(length, dtype=torch.float).unsqueeze(1)  # (L, 1)
    inv_freq = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float) / d_model)
    pe = torch.zeros(length, d_model)
    pe[:, 0::2] = torch.sin(pos * inv_freq)
    pe[:, 1::2] = torch.cos(pos * inv_freq)
    return pe  # (L, d_model)


class FeedForward(nn.Module):
    """Eq. 2: FFN(x) = max(0, x W_1 + b_1) W_2 + b_2."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.W_1, self.W_2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)

    def forward(self, x):
        return self.W_2(torch.relu(self.W_1(x)))


class EncoderLayer(nn.Module):
    def __init__(self, m: TransformerModelConfig):
        super().__init__()
        self.self_attn = MultiHeadAttention(m.d_model, m.heads)
        self.ffn = FeedForward(m.d_model, m.d_ff)
        self.norm_1, self.norm_2 = nn.LayerNorm(m.d_model), nn.LayerNorm(m.d_model)
        self.dropout = Dropout(m.dropout)

    def forward(self, x, mask, need_weights: bool = False):
        """x (B, S, d), mask (B, 1, S) -> x (B, S, d), self-attention (B, h, S, S) or None."""
        attended, weights = self.self_attn(x, x, x, mask, need_weights=need_weights)
        x = self.norm_1(x + self.dropout(attended))
        return self.norm_2(x + self.dropout(self.ffn(x))), weights


class DecoderLayer(nn.Module):
    def __init__(self, m: TransformerModelConfig):
        super().__init__()
        self.self_attn = MultiHeadAttention(m.d_model, m.heads)
        self.cross_attn = MultiHeadAttention(m.d_model, m.heads)
        self.ffn = FeedForward(m.d_model, m.d_ff)
        self.norms = nn.ModuleList(nn.LayerNorm(m.d_model) for _ in range(3))
        self.dropout = Dropout(m.dropout)

    def forward(self, y, memory, src_mask, need_weights: bool = False):
        """y (B, T, d), memory (B, S, d) -> y (B, T, d), encoder-decoder attention (B, h, T, S) or None."""
        attended, _ = self.self_attn(y, y, y, need_weights=False, is_causal=True)  # §3.2.3: no look ahead
        return self._cross_and_ffn(y, attended, *self.cross_attn.project_kv(memory, memory), src_mask, need_weights)

    def step(self, y, cache: dict[str, torch.Tensor], i: int, src_mask, need_weights: bool):
        """One new position y (N, 1, d) against the cached keys/values of layer i (updated in `cache`)."""
        k, v = self.self_attn.project_kv(y, y)  # (N, h, 1, d_k)
        cache[f"self_k{i}"] = k = torch.cat([cache[f"self_k{i}"], k], dim=2)  # (N, h, t, d_k)
        cache[f"self_v{i}"] = v = torch.cat([cache[f"self_v{i}"], v], dim=2)
        attended, _ = self.self_attn.forward_heads(y, k, v, need_weights=False)  # the prefix is all in the past
        return self._cross_and_ffn(y, attended, cache[f"src_k{i}"], cache[f"src_v{i}"], src_mask, need_weights)

    def _cross_and_ffn(self, y, attended, memory_k, memory_v, src_mask, need_weights: bool):
        y = self.norms[0](y + self.dropout(attended))
        attended, weights = self.cross_attn.forward_heads(y, memory_k, memory_v, src_mask, need_weights=need_weights)
        y = self.norms[1](y + self.dropout(attended))
        return self.norms[2](y + self.dropout(self.ffn(y))), weights


class Transformer(nn.Module):
    def __init__(self, m: TransformerModelConfig, src_vocab_size: int, tgt_vocab_size: int):
        super().__init__()
        self.d_model = m.d_model
        self.src_embed = nn.Embedding(src_vocab_size, m.d_model, padding_idx=PAD_ID)
        if m.share_embeddings:  # §3.4: one matrix for both embeddings and the pre-softmax projection
            self.tgt_embed = self.src_embed
        else:
            self.tgt_embed = nn.Embedding(tgt_vocab_size, m.d_model, padding_idx=PAD_ID)
        self.register_buffer("positions", sinusoidal_positions(m.max_positions, m.d_model), persistent=False)
        self.max_decode_len = m.max_positions - 1  # beam search stops hypotheses here (<s> takes a position)
        self.encoder = nn.ModuleList(EncoderLayer(m) for _ in range(m.layers))
        self.decoder = nn.ModuleList(DecoderLayer(m) for _ in range(m.layers))
        self.dropout = Dropout(m.dropout)
        self.attention_view: tuple[int, int | None] = (-1, None)  # (layer, head or None = mean over heads)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # The paper gives no initialisation; Xavier for projections and N(0, d^-1/2) embeddings as in tensor2tensor.
        for name, p in self.named_parameters():
            if p.dim() > 1 and "embed" not in name:
                nn.init.xavier_uniform_(p)
        for embed in {self.src_embed, self.tgt_embed}:
            nn.init.normal_(embed.weight, std=self.d_model**-0.5)
            nn.init.zeros_(embed.weight[PAD_ID])

    def _embed(self, embed: nn.Embedding, tokens: torch.Tensor, offset: int = 0) -> torch.Tensor:
        end = offset + tokens.size(1)
        if end > self.positions.size(0):
            raise ValueError(f"sequence of {end} tokens exceeds model.max_positions={self.positions.size(0)}")
        # §3.4: embeddings times sqrt(d_model); §5.4: dropout on the sums of embeddings and positions.
        return self.dropout(embed(tokens) * math.sqrt(self.d_model) + self.positions[offset:end])

    def encode(self, src: torch.Tensor, need_weights: bool = False):
        """src (B, S) -> memory (B, S, d), source mask (B, 1, S), self-attention per layer [(B, h, S, S)]
        (an empty list unless `need_weights`)."""
        src_mask = (src != PAD_ID).unsqueeze(1)
        x, weights = self._embed(self.src_embed, src), []
        for layer in self.encoder:
            x, w = layer(x, src_mask, need_weights)
            weights.append(w)
        return x, src_mask, weights if need_weights else []

    def _viewed_layer(self) -> int:
        return self.attention_view[0] % len(self.decoder)

    def _view(self, weights: torch.Tensor) -> torch.Tensor:
        """(B, h, T, S) of the viewed layer -> (B, T, S): one head, or the mean over heads."""
        head = self.attention_view[1]
        return weights.mean(1) if head is None else weights[:, head]

    def _logits(self, y: torch.Tensor) -> torch.Tensor:
        return y @ self.tgt_embed.weight.t()  # §3.4: the shared matrix is the pre-softmax projection

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor, need_weights: bool = False):
        """tgt_in (B, T) -> logits (B, T, V), the viewed encoder-decoder attention (B, T, S) or None."""
        y, attention = self._embed(self.tgt_embed, tgt_in), None
        for i, layer in enumerate(self.decoder):
            y, w = layer(y, memory, src_mask, need_weights and i == self._viewed_layer())
            attention = attention if w is None else self._view(w)
        return self._logits(y), attention

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, need_weights: bool = False):
        """Teacher-forced: logits (B, T, V) and the viewed encoder-decoder attention (B, T, S), which only
        `need_weights=True` computes (None otherwise: training takes the fused attention kernels)."""
        memory, src_mask, _ = self.encode(src)
        return self.decode(tgt_in, memory, src_mask, need_weights)

    # Incremental decoding (the interface of `reproductions.common.beam`) with a key/value cache: each step
    # feeds only the newest token, attends to the cached keys/values of the earlier positions and projects
    # one position onto the vocabulary, so a hypothesis of length T costs O(T) layer passes, not O(T^2).
    # The source's keys/values (`src_*`: the same for every beam of a sentence) are projected once.
    # `beam_search(..., cached=False)` recomputes the whole prefix instead (the reference for the tests).

    def start(self, src: torch.Tensor) -> dict[str, torch.Tensor]:
        memory, src_mask, _ = self.encode(src)
        state = {"src_mask": src_mask}
        empty = memory.new_empty((src.size(0), self.decoder[0].self_attn.heads, 0, self.decoder[0].self_attn.d_k))
        for i, layer in enumerate(self.decoder):
            state[f"src_k{i}"], state[f"src_v{i}"] = layer.cross_attn.project_kv(memory, memory)  # (B, h, S, d_k)
            state[f"self_k{i}"], state[f"self_v{i}"] = empty, empty  # (B, h, 0, d_k), grown by each step
        return state

    def step(self, state: dict[str, torch.Tensor], y_prev: torch.Tensor):
        """y_prev (N,) -> log-probs (N, V) of the next token, the new state, the viewed attention (N, S)."""
        state = dict(state)
        y = self._embed(self.tgt_embed, y_prev.unsqueeze(1), offset=state["self_k0"].size(2))  # (N, 1, d)
        attention = None
        for i, layer in enumerate(self.decoder):
            y, w = layer.step(y, state, i, state["src_mask"], need_weights=i == self._viewed_layer())
            attention = attention if w is None else self._view(w)[:, 0]  # (N, S)
        return log_softmax_fp32(self._logits(y[:, 0])), state, attention

    def attention_maps(self, src: torch.Tensor, tgt_in: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every layer's and head's weights in one teacher-forced pass over a sentence src (1, S) and a
        hypothesis tgt_in (1, T) (<s> first): "encoder" self-attention (L, h, S, S), "decoder" self-attention
        (L, h, T, T) and "cross" encoder-decoder attention (L, h, T, S), the views of Figs. 3-5."""
        with torch.no_grad(), record_attention(self) as records:
            self.forward(src, tgt_in)
        layers = range(len(self.encoder))
        return {view: torch.stack([records[f"{stack}.{i}.{name}"][0][0] for i in layers]).float()
                for view, stack, name in (("encoder", "encoder", "self_attn"), ("decoder", "decoder", "self_attn"),
                                          ("cross", "decoder", "cross_attn"))}

    def encoder_self_attention(self, src: torch.Tensor) -> torch.Tensor:
        """(L, h, S, S) for one sentence src (1, S): the view of the paper's Figs. 3-5."""
        _, _, weights = self.encode(src, need_weights=True)
        return torch.stack([w[0] for w in weights])


def build(cfg: TransformerTranslationConfig, src_vocab_size: int, tgt_vocab_size: int) -> Transformer:
    if cfg.model.share_embeddings and src_vocab_size != tgt_vocab_size:
        raise ConfigError(
            "vaswani2017 shares one embedding matrix across languages (§3.4): set data.joint_vocab=true, "
            "or model.share_embeddings=false"
        )
    return Transformer(cfg.model, src_vocab_size, tgt_vocab_size)
