"""`attnrepro translate`: sentences from stdin to stdout, optionally with the alignment heatmap."""

from __future__ import annotations

import sys
from pathlib import Path

from reproductions.common.errors import AttnreproError

AXES = {"cross": ("source", "output"), "encoder": ("source", "source"), "decoder": ("output so far", "output")}


def translate(checkpoint: Path | str, lines: list[str], beam: int | None = None,
              plot_attention: Path | None = None, layer: int | None = None, head: int | None = None,
              view: str = "cross", out=sys.stdout) -> list[str]:
    """view: "cross" (each output token over the source, Bahdanau Fig. 3), "encoder" (source over source,
    Vaswani Figs. 3-5) or "decoder" (output over its prefix); layer/head pick a layer and a head of a multi-head
    model (default: the last layer, mean over heads). The figures come from the task's `attend`, the answer
    `attnrepro explore` and the report's gallery draw too."""
    from reproductions.loading import load_model
    from reproductions.translation.decoding import translate_texts

    from .evaluate import beam_override, check_command, locate, with_decode_overrides

    _, ckpt = locate(checkpoint)
    loaded = load_model(ckpt)
    check_command(loaded, ckpt, "translate")
    if plot_attention is not None:
        _check_attention_options(loaded, layer, head, view)
    loaded.cfg = with_decode_overrides(loaded, beam_override(beam))
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise AttnreproError("no input: give one sentence per line on standard input")
    hyps, _ = translate_texts(loaded.model, loaded.src_vocab, loaded.tgt_vocab, texts, loaded.cfg.decode,
                              progress=False)
    for hyp in hyps:
        print(hyp, file=out)
    if plot_attention is not None:
        _plot_attention(loaded, texts, Path(plot_attention), layer, head, view)
    return hyps


def _check_attention_options(loaded, layer: int | None, head: int | None, view: str) -> None:
    """Before any decoding: the layer, head and view asked for exist."""
    if not hasattr(loaded.model, "attention_maps"):
        if layer is not None or head is not None or view != "cross":
            raise AttnreproError(f"{loaded.reproduction} has one attention map per output token, no layers, heads "
                                 "or encoder self-attention; drop --layer, --head and --attention")
        return
    m = loaded.cfg.model
    if layer is not None and not -m.layers <= layer < m.layers:
        raise AttnreproError(f"--layer {layer} is out of range: the model has {m.layers} layers (0..{m.layers - 1})")
    if head is not None and not 0 <= head < m.heads:
        raise AttnreproError(f"--head {head} is out of range: the model has {m.heads} heads (0..{m.heads - 1})")


def _plot_attention(loaded, texts: list[str], out: Path, layer: int | None, head: int | None, view: str) -> None:
    """One heatmap per sentence, from the task's answer (`Task.attend`): `view` at `layer` (default the last),
    one head or the mean over heads."""
    import numpy as np

    from reproductions import tasks
    from reproductions.common.plots import attention_heatmap, plot_paths

    task = tasks.get(loaded.task)
    where = "" if layer is None and head is None else f" layer {layer if layer is not None else -1}"
    where += "" if head is None else f" head {head}"
    for path, text in zip(plot_paths(out, len(texts)), texts):
        answer = task.attend(loaded, text)
        if not answer["attends"]:
            raise AttnreproError(f"{loaded.reproduction} has no attention to plot (it is a fixed-vector model)")
        shown = answer["views"][view]
        weights = np.asarray(shown["weights"])[-1 if layer is None else layer]  # (heads, rows, cols)
        weights = weights.mean(0) if head is None else weights[head]
        attention_heatmap(weights, shown["cols"], shown["rows"], path, axes=AXES[view],
                          title=f"{loaded.reproduction} {view} attention{where}: {text[:50]}")
        print(f"attention plot: {path}", file=sys.stderr)
