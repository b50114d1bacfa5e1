"""The token cache: a training bitext tokenised once into flat numpy array files, read without loading them.

Layout of one cache entry (a folder under `$ATTNREPRO_CACHE/tokens/`, named by the corpus identity, both
vocabularies and the length filter):
- `src.ids`, `tgt.ids`: every kept pair's token ids, concatenated (uint16, or int32 for vocabularies
  past 65535 entries)
- `src.offsets`, `tgt.offsets`: int64, pair i is ids[offsets[i]:offsets[i + 1]]
- `src.lengths`, `tgt.lengths`: uint16 token counts (what the batch sampler reads)
- `meta.json`: counts, byte sizes and the sha256 of every file, written last.
The folder is built under a temporary name and renamed when complete, so a crash never leaves a cache
that looks usable; one whose files disagree with `meta.json` (size or checksum: damage of the same size is
caught too) is deleted and rebuilt. A file lock makes
concurrent processes (DDP ranks on a node, parallel runs) build it once: the others wait, then map it.
Memory while building stays at one chunk of pairs (`corpus.CHUNK`) plus the tokenizer.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from ...common.data.vocab import Vocab
from ...common.io import atomic_write_json, file_sha256
from .corpus import Bitext

FORMAT = 1
FILES = ("src.ids", "tgt.ids", "src.offsets", "tgt.offsets", "src.lengths", "tgt.lengths")


def cache_key(bitext: Bitext, src_vocab: Vocab, tgt_vocab: Vocab, max_len: int) -> str:
    digest = hashlib.sha256(f"v{FORMAT}|{bitext.key}|{max_len}|".encode())
    digest.update(src_vocab.to_json().encode())
    digest.update(tgt_vocab.to_json().encode())
    return digest.hexdigest()[:24]


def id_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 65536 else np.int32)


class TokenCache:
    """A complete cache entry. The lengths are memory-mapped (the batch sampler reads them all); a pair's ids
    and offsets are read with `os.pread` when it is asked for. Reading them through a mapping would leave
    them in the process's resident memory: the kernel maps the cached pages around every fault (read-ahead,
    fault-around), so a rank sampling random pairs soon holds most of the file. Read this way, the pages stay
    in the kernel's page cache, shared by every rank, and a rank's memory does not grow with the corpus."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.meta = json.loads((self.path / "meta.json").read_text())
        self._maps: dict[str, np.ndarray] = {}
        self._files: dict[str, int] = {}
        self._dtypes = {name: np.dtype(dtype) for name, dtype in self.meta["dtypes"].items()}

    def _map(self, name: str) -> np.ndarray:
        if name not in self._maps:
            dtype = self._dtypes[name]
            size = (self.path / name).stat().st_size // dtype.itemsize
            self._maps[name] = (np.memmap(self.path / name, dtype=dtype, mode="r", shape=(size,)) if size
                                else np.zeros(0, dtype))
        return self._maps[name]

    def _read(self, name: str, start: int, count: int) -> np.ndarray:
        """`count` items of file `name` from item `start`, read (not mapped)."""
        if name not in self._files:
            self._files[name] = os.open(self.path / name, os.O_RDONLY)
        dtype = self._dtypes[name]
        data = os.pread(self._files[name], count * dtype.itemsize, start * dtype.itemsize)
        return np.frombuffer(data, dtype)

    def __getstate__(self):  # DataLoader workers open and map the files again instead of receiving copies
        return {"path": self.path, "meta": self.meta, "_maps": {}, "_files": {}, "_dtypes": self._dtypes}

    def __del__(self):
        for fd in getattr(self, "_files", {}).values():
            os.close(fd)

    def __len__(self) -> int:
        return self.meta["pairs"]

    def lengths(self, side: str) -> np.ndarray:
        return self._map(f"{side}.lengths")

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        out = []
        for side in ("src", "tgt"):
            start, end = (int(x) for x in self._read(f"{side}.offsets", index, 2))
            out.append(self._read(f"{side}.ids", start, end - start).astype(np.int64))
        return out[0], out[1]



def is_complete(path: Path) -> bool:
    """A cache entry is used only if its meta.json exists and every file has the size and sha256 it records
    (entries of older releases, without checksums, are judged on the sizes)."""
    try:
        meta = json.loads((path / "meta.json").read_text())
        if meta["format"] != FORMAT or any((path / name).stat().st_size != meta["bytes"][name] for name in FILES):
            return False
        return all(file_sha256(path / name) == meta["sha256"][name] for name in FILES) if "sha256" in meta else True
    except (OSError, ValueError, KeyError):
        return False


def ensure_cache(bitext: Bitext, src_vocab: Vocab, tgt_vocab: Vocab, max_len: int, cache_dir: Path) -> TokenCache:
    """The token cache of `bitext`, built here if no complete one exists (once across processes)."""
    from filelock import FileLock

    root = Path(cache_dir) / "tokens"
    root.mkdir(parents=True, exist_ok=True)
    final = root / cache_key(bitext, src_vocab, tgt_vocab, max_len)
    if is_complete(final):
        return TokenCache(final)
    with FileLock(str(final) + ".lock"):
        if not is_complete(final):  # another process may have built it while we waited
            if final.exists():
                print(f"attnrepro: {final} is incomplete or damaged; rebuilding it", file=sys.stderr)
                shutil.rmtree(final)
            build_cache(bitext, src_vocab, tgt_vocab, max_len, final)
    return TokenCache(final)


def build_cache(bitext: Bitext, src_vocab: Vocab, tgt_vocab: Vocab, max_len: int, final: Path) -> None:
    """Tokenise `bitext` chunk by chunk, drop pairs with an empty side or one longer than `max_len`
    tokens, append the rest to the arrays; then rename the finished folder to `final`."""
    if max_len >= 2**16:
        raise ValueError(f"max_len {max_len} does not fit the cache's uint16 lengths")
    started = time.perf_counter()
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    dtypes = {"src.ids": id_dtype(len(src_vocab)).str, "tgt.ids": id_dtype(len(tgt_vocab)).str,
              "src.offsets": "<i8", "tgt.offsets": "<i8", "src.lengths": "<u2", "tgt.lengths": "<u2"}
    files = {name: open(tmp / name, "wb") for name in FILES}
    totals = {"src": 0, "tgt": 0}
    read = kept = 0
    try:
        for side in ("src", "tgt"):
            np.zeros(1, np.int64).tofile(files[f"{side}.offsets"])
        for src_texts, tgt_texts in bitext.chunks():
            read += len(src_texts)
            encoded = {"src": src_vocab.encode_batch(src_texts), "tgt": tgt_vocab.encode_batch(tgt_texts)}
            lengths = {side: np.fromiter(map(len, ids), np.int64, len(ids)) for side, ids in encoded.items()}
            keep = ((lengths["src"] > 0) & (lengths["src"] <= max_len)
                    & (lengths["tgt"] > 0) & (lengths["tgt"] <= max_len))
            kept += int(keep.sum())
            for side, ids in encoded.items():
                kept_ids = itertools.compress(ids, keep.tolist())
                flat = np.fromiter(itertools.chain.from_iterable(kept_ids), dtype=dtypes[f"{side}.ids"],
                                   count=int(lengths[side][keep].sum()))
                flat.tofile(files[f"{side}.ids"])
                kept_lengths = lengths[side][keep]
                (totals[side] + np.cumsum(kept_lengths)).astype(np.int64).tofile(files[f"{side}.offsets"])
                totals[side] += int(kept_lengths.sum())
                kept_lengths.astype(np.uint16).tofile(files[f"{side}.lengths"])
    finally:
        for fh in files.values():
            fh.close()
    meta = {
        "format": FORMAT, "corpus": bitext.description, "corpus_key": bitext.key, "max_len": max_len,
        "pairs_read": read, "pairs": kept, "dropped": read - kept, "tokens": totals, "dtypes": dtypes,
        "bytes": {name: (tmp / name).stat().st_size for name in FILES},
        "sha256": {name: file_sha256(tmp / name) for name in FILES},
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write_json(tmp / "meta.json", meta)
    os.replace(tmp, final)
    print(f"attnrepro: tokenised {read} pairs of {bitext.description} ({kept} kept, {read - kept} dropped by "
          f"max_len={max_len}) into {final} in {meta['build_seconds']} s", file=sys.stderr)
