"""Show, Attend and Tell (Xu et al. 2015, arXiv:1502.03044v3): the LSTM caption decoder with soft (§4.2) or
hard (§4.1) attention over the CNN's annotation vectors. The registry's `xu2015` entry fixes
`model.context=soft`, `xu2015-hard` fixes `model.context=hard`; both share every other block with the
Show and Tell baseline (`reproductions.vinyals2015`), see `reproductions.common.captioner`."""

from __future__ import annotations

from reproductions.common.captioner import CaptionConfig, Captioner
from reproductions.common.captioner import build as build_captioner


def build(cfg: CaptionConfig, vocab_size: int) -> Captioner:
    if cfg.model.context not in ("soft", "hard"):
        raise ValueError(f"xu2015 attends: model.context must be soft or hard, got '{cfg.model.context}'")
    return build_captioner(cfg, vocab_size)
