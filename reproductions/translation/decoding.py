"""Translate lists of sentences with beam search, in length-sorted batches, with a progress bar."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..common.beam import Hypothesis, beam_search
from ..common.data.vocab import EOS_ID, PAD_ID, Vocab
from ..common.precision import autocast
from .config import TranslationDecodeConfig


def translate_texts(
    model,
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    texts: list[str],
    decode: TranslationDecodeConfig,
    device: str | torch.device = "cpu",
    keep_attention: bool = False,
    progress: bool = True,
    desc: str = "decoding",
    precision: str = "32-true",
    cached: bool = True,
) -> tuple[list[str], list[Hypothesis]]:
    """-> detokenised hypotheses and the raw `Hypothesis` objects, both in the order of `texts`. `precision`
    (a resolved `train.precision`) sets autocast; `cached=False` recomputes every prefix (the reference)."""
    ids = [src_vocab.encode(t) + [EOS_ID] for t in texts]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    hyps: list[Hypothesis | None] = [None] * len(ids)
    bar = tqdm(total=len(ids), desc=desc, unit="sent", disable=not progress, leave=False)
    for start in range(0, len(order), decode.batch_size):
        chunk = order[start : start + decode.batch_size]
        width = max(len(ids[i]) for i in chunk)
        src = torch.full((len(chunk), width), PAD_ID, dtype=torch.long)
        for row, i in enumerate(chunk):
            src[row, : len(ids[i])] = torch.tensor(ids[i])
        with autocast(precision, device):
            best = beam_search(model, src.to(device), decode, keep_attention=keep_attention, cached=cached)
        for i, hyp in zip(chunk, best):
            hyps[i] = hyp
        bar.update(len(chunk))
    bar.close()
    return [tgt_vocab.decode(h.tokens) for h in hyps], hyps
