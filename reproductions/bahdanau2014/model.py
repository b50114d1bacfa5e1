"""RNNsearch (Bahdanau, Cho, Bengio 2014; arXiv:1409.0473v7): what makes it RNNsearch.

A bidirectional GRU encoder reads the source x_1..x_{T_x} into annotations h_j = [->h_j; <-h_j] (§3.2). At
every target position i the decoder, in state s_{i-1}, scores each annotation with the alignment model

    e_ij = a(s_{i-1}, h_j) = v_a^T tanh(W_a s_{i-1} + U_a h_j)        (App. A.1.2)
    alpha_ij = exp(e_ij) / sum_k exp(e_ik)                              (Eq. 6)
    c_i = sum_j alpha_ij h_j                                            (Eq. 5)

and reads the context c_i into its next state s_i = f(s_{i-1}, y_{i-1}, c_i) and into the deep maxout output
(App. A.2.2); the first state is s_0 = tanh(W_s <-h_1). `AttentionContext` below is that block; the encoder,
decoder and output, shared with RNNencdec (`reproductions/cho2014`, which fixes c_i instead), are in
`reproductions.translation.rnn`. U_a h_j does not depend on i, so it is computed once per sentence.
"""

from __future__ import annotations

import torch
from torch import nn

from ..common.attention import AdditiveAttention, masked_softmax, weighted_sum
from ..translation.rnn import Encoded, RNNEncoderDecoder, RNNTranslationConfig, assemble


class AttentionContext(nn.Module):
    """RNNsearch's context block: c_i by the alignment model (Eqs. 5-6), s_0 = tanh(W_s <-h_1)."""

    def __init__(self, annotation_dim: int, hidden: int, align_dim: int):
        super().__init__()
        self.attention = AdditiveAttention(query_dim=hidden, key_dim=annotation_dim, hidden=align_dim)  # W_a U_a v_a
        self.W_s = nn.Linear(annotation_dim // 2, hidden)
        self.dim = annotation_dim  # 2n: c_i has the size of an annotation

    def start(self, enc: Encoded) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s0 = torch.tanh(self.W_s(enc.first_backward))  # (B, n)
        memory = {  # `src_*`: the same for every beam of a sentence (see reproductions.common.beam)
            "src_annotations": enc.annotations,  # h_j (B, T_x, 2n)
            "src_keys": self.attention.project_keys(enc.annotations),  # U_a h_j, once per sentence
            "src_mask": enc.mask,
        }
        return s0, memory

    def forward(self, s_prev: torch.Tensor, memory: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """s_{i-1} (B, n) -> c_i (B, 2n) and alpha_i (B, T_x)."""
        e = self.attention.score(s_prev, memory["src_keys"])  # e_ij, App. A.1.2
        alpha = masked_softmax(e, memory["src_mask"])  # Eq. 6 (padding gets exactly 0)
        return weighted_sum(alpha, memory["src_annotations"]), alpha  # Eq. 5


def build(cfg: RNNTranslationConfig, src_vocab_size: int, tgt_vocab_size: int) -> RNNEncoderDecoder:
    m = cfg.model
    return assemble(
        m, src_vocab_size, tgt_vocab_size, bidirectional=True,
        make_context=lambda annotation_dim: AttentionContext(annotation_dim, m.hidden, m.align_dim),
    )
