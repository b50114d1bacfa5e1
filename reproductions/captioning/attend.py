"""One image through a captioning model, with the map over the image behind each word (`CaptioningTask.attend`;
the answer's format is in `reproductions.common.attend`)."""

from __future__ import annotations

from functools import lru_cache

import torch

from ..common.attend import SAMPLE_SEED, alternatives, nested
from ..common.beam import beam_alternatives


@lru_cache(maxsize=2)
def cached_encoder(name: str, weights: str | None):
    """The frozen image encoder `name`, loaded once per process (the explorer and `caption` reuse it)."""
    from .encoders import load_encoder

    return load_encoder(name, weights)


def image_features(loaded, image) -> torch.Tensor:
    """An image file (a path or a binary file object) -> its annotation vectors (1, L, D), with the run's encoder."""
    from .encoders import read_image, spec

    data = loaded.cfg.data
    pixels = read_image(image, spec(data.encoder).size)[None]  # (1, 3, size, size)
    with torch.no_grad():
        maps = cached_encoder(data.encoder, data.encoder_weights)(pixels)  # (1, D, g, g)
    return maps.flatten(2).transpose(1, 2).contiguous()  # (1, L, D)


def attend_image(loaded, image, device: str = "cpu", hard: bool = False) -> dict:
    """A captioning model on one image; `hard`: the model samples locations in training (Xu §4.1)."""
    from .encoders import spec

    decode = loaded.cfg.decode
    features = image_features(loaded, image).to(device)
    hyps = beam_alternatives(loaded.model, features, decode, keep_attention=True)[0]
    best, vocab = hyps[0], loaded.tgt_vocab
    words = [vocab.id_to_token(i).lstrip("▁") or "▁" for i in best.tokens] + ["</s>"]
    views = {}
    if best.attention is not None:
        view = {"kind": "image", "rows": words, "grid": spec(loaded.cfg.data.encoder).grid,
                "weights": nested(best.attention)}
        if hard:  # s_t ~ Multinoulli(alpha_t), Eq. 8, as training draws it; decoding reads the expectation
            generator = torch.Generator().manual_seed(SAMPLE_SEED)
            view["locations"] = torch.multinomial(best.attention.float().cpu(), 1, generator=generator)[:, 0].tolist()
        views["image"] = view
    return {"output": vocab.decode(best.tokens), "tokens": words, "alternatives": alternatives(hyps, vocab),
            "attends": bool(views), "views": views}
