"""The pictures of a finished run, written to RUN_DIR/figures/ and, when W&B is on, logged to its W&B run:
learning curves (by step and by wall-clock minutes), attention maps of the first test examples, BLEU by
source length (translation) and a table of sample outputs."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from reproductions.common.plots import attention_heatmap, bleu_by_length_plot, learning_curves_plot

SAMPLES = 3  # test examples drawn with their attention
TABLE_ROWS = 20  # sample outputs in the W&B table


def read_curves(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "logs" / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_run_figures(run_dir: Path, checkpoint: Path, logger=None) -> dict[str, list[Path]]:
    """-> {kind: [png paths]} for what this run could draw."""
    from reproductions.common.checkpoint import load_model

    run_dir = Path(run_dir)
    out = run_dir / "figures"
    figures: dict[str, list[Path]] = {}
    rows = read_curves(run_dir)
    if rows:
        learning_curves_plot({run_dir.name: rows}, out / "learning_curves.png")
        figures["learning_curves"] = [out / "learning_curves.png"]
    loaded = load_model(checkpoint)
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").exists() else {}
    splits = metrics.get("splits", {})
    if loaded.task == "captioning":
        figures["attention"], table = _caption_samples(loaded, run_dir, out, splits)
    else:
        figures["attention"], table = _translation_samples(loaded, run_dir, out, splits)
        for split, scores in splits.items():
            if scores.get("bleu_by_length"):
                path = out / f"bleu_by_length_{split}.png"
                bleu_by_length_plot({loaded.reproduction: scores["bleu_by_length"]}, path,
                                    title=f"{loaded.reproduction}, {split}: BLEU by source length")
                figures.setdefault("bleu_by_length", []).append(path)
    if logger is not None:
        for kind, paths in figures.items():
            if paths:
                logger.log_image(key=f"figures/{kind}", images=[str(p) for p in paths])
        if table:
            logger.log_table(key="samples", columns=list(table[0]), data=[list(r.values()) for r in table])
    return figures


def _translation_samples(loaded, run_dir: Path, out: Path, splits: dict):
    from reproductions.common.data.translation import load_split
    from reproductions.common.decoding import translate_texts

    if not splits:
        return [], []
    split = next(iter(splits))
    data = loaded.cfg.data
    pairs = load_split(data.dataset, data.pair, split, TABLE_ROWS)
    srcs, refs = list(pairs["src"]), list(pairs["tgt"])
    hyps_file = run_dir / "hyps" / f"{split}.txt"
    hyps = hyps_file.read_text(encoding="utf-8").splitlines()[: len(srcs)] if hyps_file.exists() else []
    table = [{"source": s, "reference": r, "hypothesis": h} for s, r, h in zip(srcs, refs, hyps)]
    _, raw = translate_texts(loaded.model, loaded.src_vocab, loaded.tgt_vocab, srcs[:SAMPLES], loaded.cfg.decode,
                             keep_attention=True, progress=False)
    paths = []
    for i, (text, hyp) in enumerate(zip(srcs, raw)):
        if hyp.attention is None:
            break
        path = out / f"attention_{split}_{i + 1}.png"
        attention_heatmap(hyp.attention.cpu().numpy(), loaded.src_vocab.tokens(text) + ["</s>"],
                          [loaded.tgt_vocab.id_to_token(t) for t in hyp.tokens] + ["</s>"], path,
                          title=f"{loaded.reproduction}: {text[:50]}")
        paths.append(path)
    return paths, table


def _caption_samples(loaded, run_dir: Path, out: Path, splits: dict):
    from reproductions.common.data.captions import load_captions

    from .caption import caption_images

    if not splits:
        return [], []
    split = next(iter(splits))
    data = load_captions(loaded.cfg.data, split).limit(TABLE_ROWS)
    hyps_file = run_dir / "hyps" / f"{split}.json"
    hyps = {h["image"]: h["caption"] for h in json.loads(hyps_file.read_text())} if hyps_file.exists() else {}
    table = [{"image": im, "caption": hyps.get(im, ""), "references": " | ".join(refs)}
             for im, refs in zip(data.images, data.captions)]
    if loaded.cfg.model.context == "fixed":
        return [], table
    first = out / f"attention_{split}.png"
    with open(os.devnull, "w") as sink:
        caption_images(loaded, data.paths[:SAMPLES], plot_attention=first, out=sink)
    paths = [first] + [first.with_name(f"{first.stem}-{i}{first.suffix}") for i in range(2, SAMPLES + 1)]
    return [p for p in paths if p.exists()], table
