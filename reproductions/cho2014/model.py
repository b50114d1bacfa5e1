"""RNNencdec (Cho et al. 2014, arXiv:1406.1078), as Bahdanau et al. ran it as their baseline (§4.2): what makes
it the fixed-vector model.

A GRU encoder reads the source; its last hidden state h_T is squeezed into one fixed vector

    c = tanh(V h_T)                                  (Cho et al. §2.2, App. A.1)

which starts the decoder, s_0 = tanh(V' c), and is its context at every step: c_i = c for all i. Embeddings,
decoder, maxout output, vocabulary and training are those of RNNsearch (`reproductions.translation.rnn`);
Bahdanau et al. App. A.2.2: "the model becomes RNN Encoder-Decoder if we fix c_i". `FixedContext` below is
that block; RNNsearch's `AttentionContext` (`reproductions/bahdanau2014`) is the only other difference,
besides the encoder reading in one direction.
"""

from __future__ import annotations

import torch
from torch import nn

from ..translation.rnn import Encoded, RNNEncoderDecoder, RNNTranslationConfig, assemble


class FixedContext(nn.Module):
    """RNNencdec's context block: c = tanh(V h_T) for every step, s_0 = tanh(V' c); no attention weights."""

    def __init__(self, encoder_dim: int, hidden: int):
        super().__init__()
        self.V = nn.Linear(encoder_dim, hidden)
        self.V_prime = nn.Linear(hidden, hidden)
        self.dim = hidden

    def start(self, enc: Encoded) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = torch.tanh(self.V(enc.last_forward))  # (B, n): the whole source in one vector
        return torch.tanh(self.V_prime(c)), {"src_c": c, "src_mask": enc.mask}

    def forward(self, s_prev: torch.Tensor, memory: dict) -> tuple[torch.Tensor, None]:
        return memory["src_c"], None  # c_i = c: the same vector whatever the decoder is about to write


def build(cfg: RNNTranslationConfig, src_vocab_size: int, tgt_vocab_size: int) -> RNNEncoderDecoder:
    m = cfg.model
    return assemble(
        m, src_vocab_size, tgt_vocab_size, bidirectional=False,
        make_context=lambda encoder_dim: FixedContext(encoder_dim, m.hidden),
    )
