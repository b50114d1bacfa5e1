"""Show, Attend and Tell (Xu et al. 2015, arXiv:1502.03044v3): the LSTM caption decoder with soft (§4.2) or
hard (§4.1) attention over the CNN's annotation vectors. The registry's `xu2015` entry fixes
`model.context=soft`, `xu2015-hard` fixes `model.context=hard`; both share every other block with the
Show and Tell baseline (`reproductions.vinyals2015`): the context block is the only difference, see
`reproductions.common.captioner`."""

from __future__ import annotations

from reproductions.common.captioner import CaptionConfig, Captioner, HardAttention, SoftAttention
from reproductions.common.encoders import spec


def build(cfg: CaptionConfig, vocab_size: int) -> Captioner:
    dim = spec(cfg.data.encoder).dim  # D of the annotation vectors a_i
    if cfg.model.context == "soft":
        return Captioner(cfg.model, vocab_size, SoftAttention(cfg.model, dim))
    if cfg.model.context == "hard":
        return Captioner(cfg.model, vocab_size, HardAttention(cfg.model, dim, cfg.loss.expected_prob))
    raise ValueError(f"xu2015 attends: model.context must be soft or hard, got '{cfg.model.context}'")
