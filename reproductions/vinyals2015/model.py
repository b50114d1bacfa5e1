"""Show and Tell (Vinyals et al. 2015, arXiv:1411.4555v2): the image, embedded once, is the LSTM's first
input (t = -1) and the only thing it sees of the image: the fixed-vector baseline of Show, Attend and Tell.
Same embeddings, LSTM, output layer and vocabulary as `reproductions.xu2015`; only the context block
(`FixedImage`) differs, see `reproductions.common.captioner`."""

from __future__ import annotations

from reproductions.common.captioner import CaptionConfig, Captioner, FixedImage
from reproductions.common.encoders import spec


def build(cfg: CaptionConfig, vocab_size: int) -> Captioner:
    if cfg.model.context != "fixed":
        raise ValueError(f"vinyals2015 is the fixed-vector model: model.context must be fixed, got "
                         f"'{cfg.model.context}'")
    return Captioner(cfg.model, vocab_size, FixedImage(cfg.model, spec(cfg.data.encoder).dim))
