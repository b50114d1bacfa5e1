"""`attnrepro translate`: sentences from stdin to stdout, optionally with the alignment heatmap."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from reproductions.common.checkpoint import load_model
from reproductions.common.decoding import translate_texts
from reproductions.common.errors import AttnreproError


def plot_paths(path: Path, count: int) -> list[Path]:
    """One figure per sentence: FILE.png for the first, FILE-2.png, FILE-3.png ... for the rest."""
    return [path if i == 0 else path.with_name(f"{path.stem}-{i + 1}{path.suffix}") for i in range(count)]


def translate(checkpoint: Path | str, lines: list[str], beam: int | None = None,
              plot_attention: Path | None = None, out=sys.stdout) -> list[str]:
    from .evaluate import locate

    _, ckpt = locate(checkpoint)
    loaded = load_model(ckpt)
    decode = dataclasses.replace(loaded.cfg.decode, beam=beam) if beam else loaded.cfg.decode
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise AttnreproError("no input: give one sentence per line on standard input")
    hyps, raw = translate_texts(loaded.model, loaded.src_vocab, loaded.tgt_vocab, texts, decode,
                                keep_attention=plot_attention is not None, progress=False)
    for hyp in hyps:
        print(hyp, file=out)
    if plot_attention is not None:
        from reproductions.common.plots import attention_heatmap

        if raw[0].attention is None:
            raise AttnreproError(f"{loaded.reproduction} has no attention to plot (it is a fixed-vector model)")
        for path, text, hyp in zip(plot_paths(Path(plot_attention), len(texts)), texts, raw):
            src_tokens = loaded.src_vocab.tokens(text) + ["</s>"]
            tgt_tokens = [loaded.tgt_vocab.id_to_token(i) for i in hyp.tokens] + ["</s>"]
            attention_heatmap(hyp.attention.cpu().numpy(), src_tokens, tgt_tokens, path,
                              title=f"{loaded.reproduction}: {text[:60]}")
            print(f"attention plot: {path}", file=sys.stderr)
    return hyps
