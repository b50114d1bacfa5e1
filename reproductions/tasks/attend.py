"""What a model produces for one input, with everything it attended to, as JSON-ready data: the body of
`Task.attend` for both tasks, shared by `attnrepro explore`, the report's gallery and the figures.

One answer, whatever the model:
    {"output": the best hypothesis (detokenised), "tokens": its tokens and </s>,
     "alternatives": [{"output", "score"}, ...]  every finished hypothesis of the beam, best first
                     (score: the length-normalised log-probability that ranks them),
     "attends": False for a fixed-vector model, whose "views" are then empty,
     "views": {name: view}}
A view of text over text (kind "matrix") has "rows" and "cols" (token labels) and "weights" as
[layer][head][row][col]: one layer and one head for RNNsearch's alignment (Bahdanau Fig. 3); every layer and head
of the Transformer's "encoder", "decoder" and "cross" attention (Vaswani Figs. 3-5), recorded in a teacher-forced
pass over the best hypothesis. A view over an image (kind "image") has "rows" (the words), "grid" (g: the g x g
locations of the feature map) and "weights" [word][location]; hard attention adds "locations", one location per
word sampled from its map (Xu Eq. 8, seeded), beside the expected map that decoding uses (Figs. 2-3).
"""

from __future__ import annotations

from functools import lru_cache

import torch

from reproductions.common.beam import Hypothesis, beam_alternatives
from reproductions.common.data.vocab import BOS_ID, EOS_ID
from reproductions.common.errors import AttnreproError

MAX_SOURCE_TOKENS = 100  # longer inputs are refused: the explorer is for looking at sentences, not documents
SAMPLE_SEED = 0  # hard attention's sampled locations: the same picture for the same input


def _nested(weights: torch.Tensor) -> list:
    return weights.detach().float().cpu().numpy().round(6).tolist()


def _alternatives(hyps: list[Hypothesis], vocab) -> list[dict]:
    return [{"output": vocab.decode(h.tokens), "score": round(h.score, 4)} for h in hyps]


def attend_text(loaded, text: str, device: str = "cpu") -> dict:
    """A translation model on one sentence (beam search with the run's decoding settings)."""
    text = " ".join(text.split())
    ids = loaded.src_vocab.encode(text)
    if not ids:
        raise AttnreproError("text: give a sentence to translate (the input is empty)")
    if len(ids) > MAX_SOURCE_TOKENS:
        raise AttnreproError(f"text: {len(ids)} tokens is over the limit of {MAX_SOURCE_TOKENS}; give one sentence")
    decode, model = loaded.cfg.decode, loaded.model
    src = torch.tensor([ids + [EOS_ID]], device=device)  # (1, S)
    hyps = beam_alternatives(model, src, beam=decode.beam, alpha=decode.length_penalty, max_len_a=decode.max_len_a,
                             max_len_b=decode.max_len_b, keep_attention=True, min_len=decode.min_len)[0]
    best, vocab = hyps[0], loaded.tgt_vocab
    source = loaded.src_vocab.tokens(text) + ["</s>"]
    output = [vocab.id_to_token(t) for t in best.tokens] + ["</s>"]
    views = {}
    if hasattr(model, "attention_maps"):  # every layer and head (the Transformer)
        tgt_in = torch.tensor([[BOS_ID] + best.tokens], device=device)  # (1, T)
        maps = model.attention_maps(src, tgt_in)
        labels = {"encoder": (source, source), "decoder": (output, ["<s>"] + output[:-1]), "cross": (output, source)}
        views = {name: {"kind": "matrix", "rows": labels[name][0], "cols": labels[name][1],
                        "weights": _nested(weights)} for name, weights in maps.items()}
    elif best.attention is not None:  # one alignment per output token (RNNsearch)
        views = {"cross": {"kind": "matrix", "rows": output, "cols": source,
                           "weights": _nested(best.attention[None, None])}}
    return {"input": text, "output": vocab.decode(best.tokens), "tokens": output,
            "alternatives": _alternatives(hyps, vocab), "attends": bool(views), "views": views}


@lru_cache(maxsize=2)
def _encoder(name: str, weights: str | None):
    from reproductions.common.encoders import load_encoder

    return load_encoder(name, weights)


def image_features(loaded, image) -> torch.Tensor:
    """An image file (a path or a binary file object) -> its annotation vectors (1, L, D), with the run's encoder."""
    from reproductions.common.encoders import read_image, spec

    data = loaded.cfg.data
    pixels = read_image(image, spec(data.encoder).size)[None]  # (1, 3, size, size)
    with torch.no_grad():
        maps = _encoder(data.encoder, data.encoder_weights)(pixels)  # (1, D, g, g)
    return maps.flatten(2).transpose(1, 2).contiguous()  # (1, L, D)


def attend_image(loaded, image, device: str = "cpu", hard: bool = False) -> dict:
    """A captioning model on one image; `hard`: the model samples locations in training (Xu §4.1)."""
    from reproductions.common.encoders import spec

    decode = loaded.cfg.decode
    features = image_features(loaded, image).to(device)
    hyps = beam_alternatives(loaded.model, features, beam=decode.beam, alpha=decode.length_penalty, max_len_a=0.0,
                             max_len_b=decode.max_len, keep_attention=True, min_len=decode.min_len)[0]
    best, vocab = hyps[0], loaded.tgt_vocab
    words = [vocab.id_to_token(i).lstrip("▁") or "▁" for i in best.tokens] + ["</s>"]
    views = {}
    if best.attention is not None:
        view = {"kind": "image", "rows": words, "grid": spec(loaded.cfg.data.encoder).grid,
                "weights": _nested(best.attention)}
        if hard:  # s_t ~ Multinoulli(alpha_t), Eq. 8, as training draws it; decoding reads the expectation
            generator = torch.Generator().manual_seed(SAMPLE_SEED)
            view["locations"] = torch.multinomial(best.attention.float().cpu(), 1, generator=generator)[:, 0].tolist()
        views["image"] = view
    return {"output": vocab.decode(best.tokens), "tokens": words, "alternatives": _alternatives(hyps, vocab),
            "attends": bool(views), "views": views}
