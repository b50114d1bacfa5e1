"""Captioning in the harness: beam-search captions for images, score test splits with pycocoevalcap
(`attnrepro evaluate` on a captioning run) and `attnrepro caption CKPT IMAGE... [--plot-attention F.png]`."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from reproductions.common.beam import Hypothesis, beam_search
from reproductions.common.errors import AttnreproError
from reproductions.common.io import atomic_write_json

from . import rundir


def caption_features(model, vocab, features, decode, device: str = "cpu", keep_attention: bool = False,
                     progress: bool = True, desc: str = "captions") -> tuple[list[str], list[Hypothesis]]:
    """Captions for `features` (N, L, D) (a tensor or a `FeatureStore` slice), in order."""
    from tqdm import tqdm

    texts, hyps = [], []
    starts = range(0, len(features), decode.batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=not progress):
        batch = features[start:start + decode.batch_size].to(device)
        best = beam_search(model, batch, beam=decode.beam, alpha=decode.length_penalty, max_len_a=0.0,
                           max_len_b=decode.max_len, keep_attention=keep_attention)
        hyps.extend(best)
        texts.extend(vocab.decode(h.tokens) for h in best)
    return texts, hyps


def evaluate_captions(loaded, run_dir: Path | None, splits: list[str] | None, beam: int | None, device: str,
                      logger=None, console: Console | None = None) -> dict:
    from reproductions.common.caption_metrics import caption_scores
    from reproductions.common.caption_module import split_features
    from reproductions.common.data.captions import load_captions
    from reproductions.common.data.sources import cache_root

    cfg = loaded.cfg
    decode = dataclasses.replace(cfg.decode, beam=beam) if beam else cfg.decode
    results = {}
    for split in splits or cfg.data.test_splits:
        data = load_captions(cfg.data, split)
        store = split_features(cfg, data, cache_root(), device=device)
        features = store[store.rows(data.images)]
        hyps, _ = caption_features(loaded.model, loaded.tgt_vocab, features, decode, device,
                                   desc=f"{split} (beam {decode.beam})")
        scores = caption_scores(hyps, data.captions)
        scores.update({"beam": decode.beam, "length_penalty": decode.length_penalty,
                       "checkpoint": loaded.path.name, "encoder": cfg.data.encoder})
        results[split] = scores
        if run_dir is not None:
            atomic_write_json(run_dir / "hyps" / f"{split}.json",
                              [{"image": im, "caption": h} for im, h in zip(data.images, hyps)])
        if logger is not None:
            logger.log_metrics({f"test/{split}/{k}": scores[k] for k in METRICS})
    if run_dir is not None:
        rundir.update_metrics(run_dir, "splits", results)
    _print(results, loaded.reproduction, console or Console())
    return results


METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider_d")


def _print(results: dict, name: str, console: Console) -> None:
    table = Table(title=f"{name}: pycocoevalcap (x100)")
    for column in ("split", "images", "B-1", "B-2", "B-3", "B-4", "METEOR", "ROUGE-L", "CIDEr-D", "SPICE", "beam"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for split, s in results.items():
        table.add_row(split, str(s["images"]), *(f"{s[k]:.2f}" for k in METRICS), "n/a", str(s["beam"]))
    console.print(table)
    if results:
        console.print(f"[dim]SPICE: {next(iter(results.values()))['spice_unavailable']}[/dim]")


def caption(checkpoint: Path | str, images: list[Path], beam: int | None = None,
            plot_attention: Path | None = None, out=sys.stdout) -> list[str]:
    """Caption image files with a trained captioning model; optionally draw each word's attention map."""
    from reproductions.common.checkpoint import load_model

    from .evaluate import locate

    _, ckpt = locate(checkpoint)
    loaded = load_model(ckpt)
    if loaded.task != "captioning":
        raise AttnreproError(f"{ckpt} is a {loaded.task} model ({loaded.reproduction}); use `attnrepro translate`")
    return caption_images(loaded, images, beam, plot_attention, out)


def caption_images(loaded, images: list[Path], beam: int | None = None, plot_attention: Path | None = None,
                   out=sys.stdout) -> list[str]:
    """`caption` for a model already loaded (`reproductions.common.checkpoint.load_model`)."""
    from reproductions.common.encoders import load_encoder, read_image, spec

    from .translate import plot_paths

    if not images:
        raise AttnreproError("no images given: attnrepro caption CKPT IMAGE [IMAGE ...]")
    for image in images:
        if not Path(image).is_file():
            raise AttnreproError(f"image {image} does not exist")
    encoder_name = loaded.cfg.data.encoder
    pixels = torch.stack([read_image(Path(p)) for p in images])
    with torch.no_grad():
        maps = load_encoder(encoder_name)(pixels)  # (N, D, g, g)
    features = maps.flatten(2).transpose(1, 2).contiguous()
    decode = dataclasses.replace(loaded.cfg.decode, beam=beam) if beam else loaded.cfg.decode
    texts, hyps = caption_features(loaded.model, loaded.tgt_vocab, features, decode,
                                   keep_attention=plot_attention is not None, progress=False)
    for path, text in zip(images, texts):
        print(f"{path}\t{text}", file=out)
    if plot_attention is not None:
        from reproductions.common.plots import caption_attention_plot

        if hyps[0].attention is None:
            raise AttnreproError(f"{loaded.reproduction} has no attention to plot (it is a fixed-vector model)")
        grid = spec(encoder_name).grid
        for fig_path, pixel, hyp in zip(plot_paths(Path(plot_attention), len(images)), pixels, hyps):
            words = [loaded.tgt_vocab.id_to_token(i).lstrip("▁") or "▁" for i in hyp.tokens] + ["</s>"]
            image = pixel.permute(1, 2, 0).clamp(0, 255).to(torch.uint8).numpy()
            caption_attention_plot(image, words, hyp.attention.cpu().numpy(), grid, fig_path,
                                   title=f"{loaded.reproduction}: {loaded.tgt_vocab.decode(hyp.tokens)}")
            print(f"attention plot: {fig_path}", file=sys.stderr)
    return texts
