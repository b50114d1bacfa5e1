"""RNNencdec (Cho et al. 2014, arXiv:1406.1078), as Bahdanau et al. ran it as their baseline (§4.2).

A GRU encoder reads the source; its last state is squeezed into one fixed vector c = tanh(V h_T),
which starts the decoder (s_0 = tanh(V' c)) and is fed to it at every step (Cho et al. §2.2, App. A.1).
Embeddings, decoder, maxout output, vocabulary and training are those of RNNsearch: Bahdanau et al.
App. A.2.2 notes that "the model becomes RNN Encoder-Decoder if we fix c_i".
"""

from __future__ import annotations

from ..common.rnn import FixedContext, RNNEncoderDecoder, RNNTranslationConfig, assemble


def build(cfg: RNNTranslationConfig, src_vocab_size: int, tgt_vocab_size: int) -> RNNEncoderDecoder:
    m = cfg.model
    return assemble(
        m, src_vocab_size, tgt_vocab_size, bidirectional=False,
        make_context=lambda encoder_dim: FixedContext(encoder_dim, m.hidden),
    )
