"""Image-caption datasets: Flickr8k (official split files) and any Karpathy-split JSON (Flickr30k, COCO).

A split comes back as a `CaptionSplit`: image names, their files and each image's reference captions
(raw text). The Flickr8k text files are found and verified by `sources.resolve` like every other data
file. The images are read from `data.images_dir` or the data root; without either, the 8091 images are
downloaded once from a public GitHub copy (224x224 JPEGs, the files every record here was measured on),
each checked against the sha256 list shipped beside this module, and the folder appears only when complete.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ...common.data.sources import (
    GITHUB_RAW,
    DataError,
    DataFile,
    cache_root,
    data_root,
    discard_download,
    fetch,
    read_lines,
    source_url,
)
from ...common.io import file_sha256

# shagunsodhani/Image-Caption-Generator@7877ec6 holds the official Flickr8k text files unchanged.
_F8K_URL = (
    "https://raw.githubusercontent.com/shagunsodhani/Image-Caption-Generator/"
    "7877ec65a18f9380c3b88e7b7a9a1c692ef08ba7/data/"
)
FLICKR8K_TOKENS = DataFile(
    "flickr8k/Flickr8k_text/Flickr8k.token.txt.gz",
    _F8K_URL + "annotations/Flickr8k.token.txt",
    "fc18d93dd1816b367a790e08c73c10b4ef1465102bad4f2412f19ea967c1344a",
)
FLICKR8K_SPLITS = {
    "train": DataFile("flickr8k/Flickr8k_text/Flickr_8k.trainImages.txt", _F8K_URL + "Flickr_8k.trainImages.txt",
                      "1350b91ed1ff0062ddae239123d8fc3949ab6e5d490293b2eedb02c4df7aa5ef"),
    "dev": DataFile("flickr8k/Flickr8k_text/Flickr_8k.devImages.txt", _F8K_URL + "Flickr_8k.devImages.txt",
                    "1a602de5700452f5d869790e4d310c0e9d97d07d7be5601e524419331ef99b0e"),
    "test": DataFile("flickr8k/Flickr8k_text/Flickr_8k.testImages.txt", _F8K_URL + "Flickr_8k.testImages.txt",
                     "6461ca86cf5d4c810cbbc3a7dd5a4ef0900b7306aba17dfa9b96e93f3afc452d"),
}
FLICKR8K_IMAGES = "flickr8k/Images"
# RlNZLER/Image-Text-Matching@56a15d9 holds all 8091 images, resized to 224x224 by its authors (later removed).
FLICKR8K_IMAGES_URL = f"{GITHUB_RAW}/RlNZLER/Image-Text-Matching/56a15d913c3f290e2ee896386ece6076c1eea02e/data/images/"
FLICKR8K_IMAGE_LIST = Path(__file__).with_name("flickr8k_images.tsv")  # image, bytes, sha256
FLICKR8K_FORM = "https://forms.illinois.edu/sec/1713398"  # the official request form for the originals
KARPATHY_SPLITS = ("train", "val", "test", "restval")


@dataclass
class CaptionSplit:
    name: str
    images: list[str]  # file names, the key of each image
    paths: list[Path]
    captions: list[list[str]]  # the references of images[i]

    def __len__(self) -> int:
        return len(self.images)

    def limit(self, n: int | None) -> CaptionSplit:
        if n is None:
            return self
        return CaptionSplit(self.name, self.images[:n], self.paths[:n], self.captions[:n])


def _image_dir(images_dir: str | None, default_relpath: str) -> Path:
    if images_dir:
        path = Path(images_dir).expanduser()
    else:
        root = data_root()
        if root is None:
            if default_relpath == FLICKR8K_IMAGES:
                return flickr8k_images()
            raise DataError(f"the images are read from a local folder: set data.images_dir, or ATTNREPRO_DATA to a "
                            f"data root holding {default_relpath}/")
        path = root / default_relpath
    if not path.is_dir():
        raise DataError(f"image folder {path} does not exist; set ATTNREPRO_DATA or data.images_dir to where they are")
    return path


def flickr8k_image_list() -> dict[str, str]:
    """Each Flickr8k image's file name -> sha256, as the mirror serves it."""
    lines = [line for line in FLICKR8K_IMAGE_LIST.read_text().splitlines()[2:] if line]
    return {name: sha for name, _, sha in (line.split("\t") for line in lines)}


def flickr8k_images() -> Path:
    """The cache's complete, verified Flickr8k image folder, downloading the images it lacks.

    Downloads go into a hidden `.Images.partial` folder beside it; each file is kept only if its sha256
    matches the shipped list, so an interrupted or failed download resumes where it stopped, and the
    folder is renamed to `Images` (one atomic step) once all 8091 are there."""
    folder = cache_root() / "data" / FLICKR8K_IMAGES
    if folder.is_dir():
        return folder
    expected = flickr8k_image_list()
    partial = folder.with_name(f".{folder.name}.partial")
    partial.mkdir(parents=True, exist_ok=True)
    missing = [n for n, sha in expected.items() if not (partial / n).is_file() or file_sha256(partial / n) != sha]
    advice = (f"run again to fetch the rest, or request the images at {FLICKR8K_FORM} and set data.images_dir "
              "to their folder")
    fetched = fetch([FLICKR8K_IMAGES_URL + n for n in missing], f"{len(missing)} Flickr8k images", advice)
    bad = []
    for name, path in zip(missing, fetched):
        if file_sha256(path) != expected[name]:
            discard_download(path)
            bad.append(name)
        elif path.is_relative_to(cache_root()):
            os.replace(path, partial / name)
        else:  # a local path served as is: copy, never move, a source
            shutil.copyfile(path, partial / name)
    if bad:
        raise DataError(f"{len(bad)} downloaded Flickr8k image(s) fail their checksum, e.g. {bad[0]} from "
                        f"{source_url(FLICKR8K_IMAGES_URL)}; they were discarded and the "
                        f"{len(expected) - len(bad)} verified ones kept: {advice}")
    os.replace(partial, folder)
    return folder


def _check_files(paths: list[Path], split: str) -> None:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} image(s) of split '{split}' are missing, e.g. {missing[0]}; the image folder is "
            "incomplete"
        )


def flickr8k_references(token_lines: list[str]) -> dict[str, list[str]]:
    """Lines `<image>.jpg#<k>\t<caption>` of Flickr8k.token.txt -> each image's reference captions."""
    refs: dict[str, list[str]] = {}
    for line in token_lines:
        if line.strip():
            key, caption = line.split("\t", 1)
            refs.setdefault(key.split("#")[0], []).append(caption.strip())
    return refs


def load_flickr8k(split: str, images_dir: str | None = None) -> CaptionSplit:
    if split not in FLICKR8K_SPLITS:
        raise DataError(f"Flickr8k has no split '{split}'; its splits are {', '.join(FLICKR8K_SPLITS)}")
    names = [n.strip() for n in read_lines(FLICKR8K_SPLITS[split]) if n.strip()]
    refs = flickr8k_references(read_lines(FLICKR8K_TOKENS))
    folder = _image_dir(images_dir, FLICKR8K_IMAGES)
    paths = [folder / n for n in names]
    _check_files(paths, split)
    return CaptionSplit(split, names, paths, [refs[n] for n in names])


def karpathy_path(json_path: str | None) -> Path:
    """data.karpathy_json: absolute, or relative to $ATTNREPRO_DATA (else to the working directory)."""
    if not json_path:
        raise DataError("data.dataset=karpathy needs data.karpathy_json (path to e.g. dataset_coco.json)")
    path = Path(json_path).expanduser()
    root = data_root()
    return root / path if not path.is_absolute() and root is not None else path


def load_karpathy(json_path: str | None, split: str, images_dir: str | None) -> CaptionSplit:
    """Karpathy's `dataset_{flickr8k,flickr30k,coco}.json`; 'train' includes COCO's 'restval' images."""
    path = karpathy_path(json_path)
    if not path.is_file():
        raise DataError(f"Karpathy split file {path} does not exist; set data.karpathy_json to it")
    try:
        images = json.loads(path.read_text())["images"]
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path} is not a Karpathy split file ({type(err).__name__}: {err}); "
                        "expected {'images': [{'filename', 'split', 'sentences': [{'raw'}]}]}") from None
    wanted = {"train": {"train", "restval"}}.get(split, {split})
    if split not in KARPATHY_SPLITS:
        raise DataError(f"Karpathy splits are {', '.join(KARPATHY_SPLITS)}; got '{split}'")
    folder = Path(images_dir).expanduser() if images_dir else path.parent
    rows = [im for im in images if im.get("split") in wanted]
    names = [f"{im['filepath']}/{im['filename']}" if im.get("filepath") else im["filename"] for im in rows]
    paths = [folder / n for n in names]
    _check_files(paths, split)
    # The words of Karpathy's `tokens` (lower-cased, punctuation removed; pycocoevalcap's PTB tokenizer removes
    # it too), split on whitespace like Flickr8k's pre-tokenized captions; `raw` where there are none.
    return CaptionSplit(split, names, paths, [[" ".join(s["tokens"]) if s.get("tokens") else s["raw"].strip()
                                               for s in im["sentences"]] for im in rows])


def load_captions(cfg, split: str) -> CaptionSplit:
    """The split named by a caption data config (`reproductions.captioning.config.CaptionDataConfig`)."""
    if cfg.dataset == "flickr8k":
        data = load_flickr8k(split, cfg.images_dir)
    else:
        data = load_karpathy(cfg.karpathy_json, split, cfg.images_dir)
    return data.limit(cfg.train_limit if split == cfg.train_split else cfg.eval_limit)


def checksums(cfg) -> dict[str, str]:
    if cfg.dataset == "flickr8k":
        return {f.relpath: f.text_sha256 for f in [FLICKR8K_TOKENS, *FLICKR8K_SPLITS.values()]}
    import hashlib

    return {str(cfg.karpathy_json): hashlib.sha256(karpathy_path(cfg.karpathy_json).read_bytes()).hexdigest()}
