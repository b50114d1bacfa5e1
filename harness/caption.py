"""`attnrepro caption CKPT IMAGE... [--plot-attention F.png]`: captions for image files (and per-word attention
maps); the decoding itself is the captioning task's (`reproductions.captioning.task`)."""

from __future__ import annotations

import sys
from pathlib import Path


def caption(checkpoint: Path | str, images: list[Path], beam: int | None = None,
            plot_attention: Path | None = None, out=sys.stdout) -> list[str]:
    from reproductions.captioning.task import caption_images
    from reproductions.loading import load_model

    from .evaluate import beam_override, check_command, locate, with_decode_overrides

    _, ckpt = locate(checkpoint)
    loaded = load_model(ckpt)
    check_command(loaded, ckpt, "caption")
    loaded.cfg = with_decode_overrides(loaded, beam_override(beam))
    return caption_images(loaded, images, plot_attention, out)
