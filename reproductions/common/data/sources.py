"""Where each data file lives, and how it is found, fetched and verified.

A data file is named by its path under the data root, one folder per dataset as its source lays it out
(e.g. `multi30k/task1/raw/train.en.gz`); the download cache's `data/` folder has the same layout. With
`ATTNREPRO_DATA` set, files are read from that root and nothing is downloaded. Without it, files are
downloaded once from their public source into the attnrepro cache. Either way the sha256 of the
(decompressed) text is checked before use.

Every public source is a file on raw.githubusercontent.com at a pinned commit. `ATTNREPRO_MIRROR` names
another base URL that serves the same paths (a local copy, a proxy, the tests' loopback server).
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import AttnreproError
from ..io import atomic_path

DATA_ENV = "ATTNREPRO_DATA"
CACHE_ENV = "ATTNREPRO_CACHE"
MIRROR_ENV = "ATTNREPRO_MIRROR"
GITHUB_RAW = "https://raw.githubusercontent.com"


class DataError(AttnreproError):
    """Missing or corrupt data, with the file named and what to do about it."""


@dataclass(frozen=True)
class DataFile:
    relpath: str  # under the data root; '.gz' files are gzip-compressed text
    url: str  # public source (the served file may be plain text or gzip)
    text_sha256: str  # sha256 of the decompressed text


def cache_root() -> Path:
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "attnrepro"
    return Path(root)


def data_root() -> Path | None:
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else None


def _read_text_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DataError(f"{path} is not a readable gzip file ({err}); delete it and fetch it again") from None
    return raw


def source_url(url: str) -> str:
    """`url`, served from `ATTNREPRO_MIRROR` instead of raw.githubusercontent.com when that is set."""
    mirror = os.environ.get(MIRROR_ENV, "").rstrip("/")
    return mirror + url[len(GITHUB_RAW):] if mirror and url.startswith(GITHUB_RAW + "/") else url


def fetch(urls: list[str], what: str, advice: str) -> list[Path]:
    """Download `urls` through HF datasets' download manager (a progress bar, threads for many small files)
    into the cache's downloads/ folder; any failure is one DataError naming `what` and `advice`, and leaves
    no half-written file behind."""
    from datasets import DownloadConfig, DownloadManager

    config = DownloadConfig(cache_dir=str(cache_root() / "downloads"), max_retries=2,
                            download_desc=f"Downloading {what}")
    served = [source_url(u) for u in urls]
    try:
        return [Path(p) for p in DownloadManager(download_config=config).download(served)]
    except Exception as err:  # network errors come in many types
        _discard_incomplete(served)
        where = served[0] if len(served) == 1 else served[0].rsplit("/", 1)[0] + "/"
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"could not download {what} from {where} ({reason}); {advice}") from None


def _discard_incomplete(urls: list[str]) -> None:
    """Delete the `.incomplete` files a failed or cut-short transfer of `urls` left in downloads/. HF names a
    download `sha256(url)[.sha256(etag)]`; the download manager has joined all its threads before it raises."""
    from datasets.utils.file_utils import hash_url_to_filename

    names = {hash_url_to_filename(u) for u in urls}
    for path in (cache_root() / "downloads").glob("*.incomplete"):
        if path.name.split(".")[0] in names:
            path.unlink(missing_ok=True)


def discard_download(path: Path) -> None:
    """Delete a fetched file, and HF's metadata beside it, if it is the download cache's copy (a local source
    path is never touched)."""
    if path.is_relative_to(cache_root() / "downloads"):
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".json").unlink(missing_ok=True)


def _download(file: DataFile, dest: Path) -> None:
    """Fetch `file.url`, check its text, then store it (gzipped if `dest` ends in .gz) at `dest`."""
    [fetched] = fetch([file.url], file.relpath, f"try again later, or set {DATA_ENV} to a folder that holds it")
    try:
        text = _read_text_bytes(fetched)
    except DataError:
        discard_download(fetched)
        raise DataError(f"the download of {file.relpath} from {source_url(file.url)} is a broken gzip file "
                        "(corrupt or cut short); try again later") from None
    digest = hashlib.sha256(text).hexdigest()
    discard_download(fetched)  # a bad download must not be found again by the next try; a good one is kept below
    if digest != file.text_sha256:
        raise DataError(f"the download of {file.relpath} from {source_url(file.url)} fails its checksum (sha256 "
                        f"{digest[:12]}..., expected {file.text_sha256[:12]}...); try again later")
    with atomic_path(dest) as tmp:
        tmp.write_bytes(gzip.compress(text) if dest.suffix == ".gz" else text)


def resolve(file: DataFile) -> Path:
    """Path of a verified local copy of `file`, downloading it when no data root is configured."""
    root = data_root()
    if root is not None:
        path = root / file.relpath
        if not path.exists():
            raise DataError(
                f"{path} not found: {DATA_ENV}={root} does not hold {file.relpath}. "
                f"Put the file there (source: {file.url}) or unset {DATA_ENV} to download it."
            )
    else:
        path = cache_root() / "data" / file.relpath
        if not path.exists():
            _download(file, path)
    verify(file, path)
    return path


def verify(file: DataFile, path: Path) -> None:
    digest = hashlib.sha256(_read_text_bytes(path)).hexdigest()
    if digest != file.text_sha256:
        raise DataError(
            f"{path} fails its checksum (sha256 of its text is {digest[:12]}..., expected "
            f"{file.text_sha256[:12]}...): the file is corrupt or a different version; replace it with "
            f"the one from {file.url}"
        )


def read_lines(file: DataFile) -> list[str]:
    """The verified file's lines, without line endings."""
    text = _read_text_bytes(resolve(file)).decode("utf-8")
    return text.rstrip("\n").split("\n")

