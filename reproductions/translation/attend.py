"""One sentence through a translation model, with everything it attended to (`TranslationTask.attend`; the
answer's format is in `reproductions.common.attend`)."""

from __future__ import annotations

import torch

from ..common.attend import MAX_SOURCE_TOKENS, alternatives, nested
from ..common.beam import beam_alternatives
from ..common.data.vocab import BOS_ID, EOS_ID
from ..common.errors import AttnreproError


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
    hyps = beam_alternatives(model, src, decode, keep_attention=True)[0]
    best, vocab = hyps[0], loaded.tgt_vocab
    source = loaded.src_vocab.tokens(text) + ["</s>"]
    output = [vocab.id_to_token(t) for t in best.tokens] + ["</s>"]
    views = {}
    if hasattr(model, "attention_maps"):  # every layer and head (the Transformer)
        tgt_in = torch.tensor([[BOS_ID] + best.tokens], device=device)  # (1, T)
        maps = model.attention_maps(src, tgt_in)
        labels = {"encoder": (source, source), "decoder": (output, ["<s>"] + output[:-1]), "cross": (output, source)}
        views = {name: {"kind": "matrix", "rows": labels[name][0], "cols": labels[name][1],
                        "weights": nested(weights)} for name, weights in maps.items()}
    elif best.attention is not None:  # one alignment per output token (RNNsearch)
        views = {"cross": {"kind": "matrix", "rows": output, "cols": source,
                           "weights": nested(best.attention[None, None])}}
    return {"input": text, "output": vocab.decode(best.tokens), "tokens": output,
            "alternatives": alternatives(hyps, vocab), "attends": bool(views), "views": views}
