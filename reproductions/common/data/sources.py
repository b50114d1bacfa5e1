"""Where each data file lives, and how it is found, fetched and verified.

A data file is named by its path under the data root (the layout of `shared/data`, e.g.
`multi30k/task1/raw/train.en.gz`). With `ATTNREPRO_DATA` set, files are read from that root and
nothing is downloaded. Without it, files are downloaded once from their public source into the
attnrepro cache. Either way the sha256 of the (decompressed) text is checked before use.
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


def _download(file: DataFile, dest: Path) -> None:
    """Fetch `file.url` through HF datasets' download manager, then store it gzipped at `dest`."""
    from datasets import DownloadConfig, DownloadManager

    manager = DownloadManager(download_config=DownloadConfig(cache_dir=str(cache_root() / "downloads")))
    try:
        fetched = Path(manager.download(file.url))
    except Exception as err:  # network errors come in many types
        raise DataError(
            f"could not download {file.relpath} from {file.url} ({err}); set {DATA_ENV} to a folder that holds it"
        ) from None
    text = _read_text_bytes(fetched)
    digest = hashlib.sha256(text).hexdigest()
    if digest != file.text_sha256:  # nothing is stored: a bad download must not poison the cache
        raise DataError(f"the download of {file.relpath} from {file.url} fails its checksum (sha256 "
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

