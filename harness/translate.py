"""`attnrepro translate`: sentences from stdin to stdout, optionally with the alignment heatmap."""

from __future__ import annotations

import sys
from pathlib import Path

from reproductions.common.errors import AttnreproError


def translate(checkpoint: Path | str, lines: list[str], beam: int | None = None,
              plot_attention: Path | None = None, layer: int | None = None, head: int | None = None,
              view: str = "cross", out=sys.stdout) -> list[str]:
    """view: "cross" (each output token over the source, Bahdanau Fig. 3) or "encoder" (source over
    source, Vaswani Figs. 3-5); layer/head pick a layer and a head of a multi-head model (default: the
    last layer, mean over heads)."""
    from reproductions.loading import load_model
    from reproductions.translation.decoding import translate_texts

    from .evaluate import beam_override, check_command, locate, with_decode_overrides

    _, ckpt = locate(checkpoint)
    loaded = load_model(ckpt)
    check_command(loaded, ckpt, "translate")
    _set_attention_view(loaded, layer, head, view)
    decode = with_decode_overrides(loaded, beam_override(beam)).decode
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise AttnreproError("no input: give one sentence per line on standard input")
    hyps, raw = translate_texts(loaded.model, loaded.src_vocab, loaded.tgt_vocab, texts, decode,
                                keep_attention=plot_attention is not None, progress=False)
    for hyp in hyps:
        print(hyp, file=out)
    if plot_attention is not None:
        from reproductions.common.plots import attention_heatmap, plot_paths

        if raw[0].attention is None:
            raise AttnreproError(f"{loaded.reproduction} has no attention to plot (it is a fixed-vector model)")
        where = "" if layer is None and head is None else f" layer {layer if layer is not None else -1}"
        where += "" if head is None else f" head {head}"
        for path, text, hyp in zip(plot_paths(Path(plot_attention), len(texts)), texts, raw):
            src_tokens = loaded.src_vocab.tokens(text) + ["</s>"]
            if view == "encoder":
                weights, rows = _encoder_view(loaded, text, layer, head), src_tokens
            else:
                weights = hyp.attention.cpu().numpy()
                rows = [loaded.tgt_vocab.id_to_token(i) for i in hyp.tokens] + ["</s>"]
            attention_heatmap(weights, src_tokens, rows, path,
                              title=f"{loaded.reproduction} {view} attention{where}: {text[:50]}")
            print(f"attention plot: {path}", file=sys.stderr)
    return hyps


def _set_attention_view(loaded, layer: int | None, head: int | None, view: str) -> None:
    model = loaded.model
    if not hasattr(model, "attention_view"):
        if layer is not None or head is not None or view != "cross":
            raise AttnreproError(f"{loaded.reproduction} has one attention map per output token, no layers, heads "
                                 "or encoder self-attention; drop --layer, --head and --attention")
        return
    m = loaded.cfg.model
    if layer is not None and not -m.layers <= layer < m.layers:
        raise AttnreproError(f"--layer {layer} is out of range: the model has {m.layers} layers (0..{m.layers - 1})")
    if head is not None and not 0 <= head < m.heads:
        raise AttnreproError(f"--head {head} is out of range: the model has {m.heads} heads (0..{m.heads - 1})")
    model.attention_view = (-1 if layer is None else layer, head)


def _encoder_view(loaded, text: str, layer: int | None, head: int | None):
    import torch

    from reproductions.common.data.vocab import EOS_ID

    src = torch.tensor([loaded.src_vocab.encode(text) + [EOS_ID]])
    with torch.no_grad():
        weights = loaded.model.encoder_self_attention(src)[-1 if layer is None else layer]  # (h, S, S)
    return (weights.mean(0) if head is None else weights[head]).cpu().numpy()
