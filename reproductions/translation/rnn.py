"""The RNN encoder-decoder shared by RNNsearch (bahdanau2014) and RNNencdec (cho2014).

Following Bahdanau et al. 2014 (arXiv:1409.0473v7), App. A, the two models share the embeddings, the GRU
encoder, the GRU decoder s_i = f(s_{i-1}, y_{i-1}, c_i), the deep maxout output and the vocabulary; they
differ only in the *context* block that supplies c_i and the initial state s_0, which each paper's folder
defines and `assemble` plugs in:
- `reproductions.bahdanau2014.model.AttentionContext`: c_i = sum_j alpha_ij h_j over bidirectional annotations;
- `reproductions.cho2014.model.FixedContext`: one vector c summarising the source, the same at every step.
A context block has `dim` (the size of c_i), `start(Encoded) -> (s_0, memory)` and
`forward(s_{i-1}, memory) -> (c_i, alpha_i or None)`; memory entries named `src_*` are per sentence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from ..common.beam import log_softmax_fp32
from ..common.data.vocab import PAD_ID
from ..common.dropout import Dropout
from .config import TranslationConfig


@dataclass
class RNNModelConfig:
    emb_dim: int = 620  # m, App. A.2.3
    hidden: int = 1000  # n: encoder units per direction and decoder units, App. A.2.3
    align_dim: int = 1000  # n': hidden units of the alignment model, App. A.2.3
    maxout_dim: int = 500  # l: maxout units of the deep output, App. A.2.3
    dropout: float = 0.0  # the paper uses none; small-data presets need some
    init: Literal["paper", "torch"] = "paper"  # App. B.1, or PyTorch's defaults


@dataclass
class RNNTranslationConfig(TranslationConfig):
    model: RNNModelConfig = field(default_factory=RNNModelConfig)


@dataclass
class Encoded:
    annotations: torch.Tensor  # (B, S, dirs * n)
    mask: torch.Tensor  # (B, S) True on real tokens
    last_forward: torch.Tensor  # (B, n) forward state at the last real token, ->h_{T_x}
    first_backward: torch.Tensor | None  # (B, n) backward state at the first token, <-h_1


class GRUEncoder(nn.Module):
    """Embeddings and a (bi)directional GRU over the source (§3.2)."""

    def __init__(self, vocab_size: int, emb_dim: int, hidden: int, bidirectional: bool, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD_ID)
        # DEVIATION: torch's GRU applies the reset gate after the recurrent product, r * (U h + b), where
        # the paper has U (r * h) (App. A.1.1); same parameters and capacity, and a fused kernel.
        self.rnn = nn.GRU(emb_dim, hidden, batch_first=True, bidirectional=bidirectional)
        self.dropout = Dropout(dropout)
        self.bidirectional = bidirectional

    @property
    def out_dim(self) -> int:
        return self.rnn.hidden_size * (2 if self.bidirectional else 1)

    def forward(self, src: torch.Tensor) -> Encoded:
        mask = src != PAD_ID  # (B, S)
        lengths = mask.sum(1)
        packed = nn.utils.rnn.pack_padded_sequence(
            self.dropout(self.embed(src)), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        out, h_n = self.rnn(packed)  # h_n: (dirs, B, n)
        annotations, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.size(1))
        return Encoded(
            annotations=annotations,
            mask=mask,
            last_forward=h_n[0],
            first_backward=h_n[1] if self.bidirectional else None,  # the backward pass ends at token 1
        )


class MaxoutGRUDecoder(nn.Module):
    """One step of the decoder of App. A.2.2:
    s_i = GRU(s_{i-1}, [E y_{i-1}; c_i]);
    t~_i = U_o s_{i-1} + V_o E y_{i-1} + C_o c_i;  t_i = max over pairs of t~_i;  p(y_i) ∝ exp(W_o t_i).
    The output uses s_{i-1}, not s_i, exactly as the appendix writes it.
    """

    def __init__(self, vocab_size: int, emb_dim: int, hidden: int, ctx_dim: int, maxout_dim: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD_ID)
        # DEVIATION: torch's GRUCell gating, as in GRUEncoder.
        self.cell = nn.GRUCell(emb_dim + ctx_dim, hidden)
        self.U_o = nn.Linear(hidden, 2 * maxout_dim)
        self.V_o = nn.Linear(emb_dim, 2 * maxout_dim, bias=False)
        self.C_o = nn.Linear(ctx_dim, 2 * maxout_dim, bias=False)
        self.W_o = nn.Linear(maxout_dim, vocab_size)
        self.dropout = Dropout(dropout)
        self.maxout_dim = maxout_dim

    def output(self, y_prev_emb: torch.Tensor, s_prev: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The deep maxout output for any leading shape: y_prev_emb (..., m), s_prev (..., n), c (..., ctx) ->
        logits (..., V). It needs no recurrence, so teacher forcing runs it once over every step."""
        t_tilde = self.U_o(s_prev) + self.V_o(y_prev_emb) + self.C_o(c)  # (..., 2l)
        t = t_tilde.unflatten(-1, (self.maxout_dim, 2)).max(dim=-1).values  # (..., l)
        return self.W_o(self.dropout(t))  # (..., V)

    def forward(self, y_prev_emb: torch.Tensor, s_prev: torch.Tensor, c: torch.Tensor):
        """One step: y_prev_emb (B, m), s_prev (B, n), c (B, ctx) -> logits (B, V), s_i (B, n)."""
        return self.output(y_prev_emb, s_prev, c), self.recur(y_prev_emb, s_prev, c)

    def recur(self, y_prev_emb: torch.Tensor, s_prev: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """s_i = GRU(s_{i-1}, [E y_{i-1}; c_i]): (B, n)."""
        return self.cell(torch.cat([y_prev_emb, c], dim=-1), s_prev)


class RNNEncoderDecoder(nn.Module):
    """Encoder + context block + decoder. `forward` is teacher-forced; `start`/`step` decode incrementally
    (the interface of `reproductions.common.beam`)."""

    def __init__(self, encoder: GRUEncoder, context: nn.Module, decoder: MaxoutGRUDecoder):
        super().__init__()
        self.encoder, self.context, self.decoder = encoder, context, decoder

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor):
        """src (B, S), tgt_in (B, T) starting with <s> -> logits (B, T, V), alignments (B, T, S) or None.
        Only the recurrence (attention and GRU) runs step by step; the output layer, most of the arithmetic,
        then runs once over all (B, T) positions: the same function as `step`, in large matrix products."""
        s, memory = self.context.start(self.encoder(src))
        embedded = self.decoder.dropout(self.decoder.embed(tgt_in))  # (B, T, m)
        states, contexts, all_alpha = [], [], []
        for i in range(tgt_in.size(1)):
            c, alpha = self.context(s, memory)
            states.append(s)  # s_{i-1}: the output at step i reads the state before it
            contexts.append(c)
            all_alpha.append(alpha)
            s = self.decoder.recur(embedded[:, i], s, c)
        logits = self.decoder.output(embedded, torch.stack(states, dim=1), torch.stack(contexts, dim=1))
        alignments = None if all_alpha[0] is None else torch.stack(all_alpha, dim=1)
        return logits, alignments

    def start(self, src: torch.Tensor) -> dict[str, torch.Tensor]:
        s, memory = self.context.start(self.encoder(src))
        return {"s": s, **memory}

    def step(self, state: dict[str, torch.Tensor], y_prev: torch.Tensor):
        """state (batch-first tensors), y_prev (N,) -> log-probs (N, V), new state, alignment (N, S) or None."""
        c, alpha = self.context(state["s"], state)
        logits, s = self.decoder(self.decoder.embed(y_prev), state["s"], c)
        return log_softmax_fp32(logits), {**state, "s": s}, alpha


def init_paper_(model: nn.Module) -> None:
    """App. B.1: recurrent matrices random orthogonal; W_a, U_a ~ N(0, 0.001^2); v_a and every bias
    zero; every other weight ~ N(0, 0.01^2)."""
    for name, param in model.named_parameters():
        if "bias" in name:
            nn.init.zeros_(param)
        elif "weight_hh" in name:  # (3n, n): one orthogonal block per gate
            for block in param.data.chunk(3, dim=0):
                nn.init.orthogonal_(block)
        elif name.endswith(("W_a.weight", "U_a.weight")):
            nn.init.normal_(param, std=0.001)
        elif name.endswith("v_a.weight"):
            nn.init.zeros_(param)
        else:
            nn.init.normal_(param, std=0.01)


def assemble(m: RNNModelConfig, src_vocab_size: int, tgt_vocab_size: int, bidirectional: bool, make_context):
    """Encoder, the context block `make_context(encoder_dim)` and the shared decoder, initialised per `m.init`."""
    encoder = GRUEncoder(src_vocab_size, m.emb_dim, m.hidden, bidirectional=bidirectional, dropout=m.dropout)
    context = make_context(encoder.out_dim)
    decoder = MaxoutGRUDecoder(tgt_vocab_size, m.emb_dim, m.hidden, context.dim, m.maxout_dim, m.dropout)
    model = RNNEncoderDecoder(encoder, context, decoder)
    if m.init == "paper":
        init_paper_(model)
    return model
