"""RNNsearch (Bahdanau, Cho, Bengio 2014; arXiv:1409.0473v7).

A bidirectional GRU encoder gives annotations h_j = [->h_j; <-h_j] (§3.2); the decoder attends over them
with the additive alignment model (§3.1, App. A.1.2) and predicts through a deep maxout output
(App. A.2.2). Every block but the context is shared with RNNencdec (`reproductions/cho2014`).
"""

from __future__ import annotations

from ..common.rnn import AttentionContext, RNNEncoderDecoder, RNNTranslationConfig, assemble


def build(cfg: RNNTranslationConfig, src_vocab_size: int, tgt_vocab_size: int) -> RNNEncoderDecoder:
    m = cfg.model
    return assemble(
        m, src_vocab_size, tgt_vocab_size, bidirectional=True,
        make_context=lambda annotation_dim: AttentionContext(annotation_dim, m.hidden, m.align_dim),
    )
