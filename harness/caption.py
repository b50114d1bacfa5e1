"""`attnrepro caption CKPT IMAGE... [--plot-attention F.png]`: captions for image files (and per-word attention
maps); the decoding itself is the captioning task's (`reproductions.tasks.captioning`)."""

from __future__ import annotations

import sys
from pathlib import Path

from reproductions.common.errors import AttnreproError


def caption(checkpoint: Path | str, images: list[Path], beam: int | None = None,
            plot_attention: Path | None = None, out=sys.stdout) -> list[str]:
    from reproductions.loading import load_model
    from reproductions.tasks.captioning import caption_images

    from .evaluate import locate

    _, ckpt = locate(checkpoint)
    loaded = load_model(ckpt)
    if loaded.task != "captioning":
        raise AttnreproError(f"{ckpt} is a {loaded.task} model ({loaded.reproduction}); use `attnrepro translate`")
    return caption_images(loaded, images, beam, plot_attention, out)
