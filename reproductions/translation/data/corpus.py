"""Training bitexts read as a stream of chunks, each with an identity (checksum or revision) that keys
the vocabulary and the token cache.

`data.source` chooses where WMT14 training data comes from:
- `hub` (default): the HF hub dataset `wmt/wmt14` at `data.hub_revision`; its Parquet shards are
  downloaded once by `huggingface_hub` (network) and then read like a local folder;
- a folder of the same Parquet shards (`train-*.parquet`, directly or under `de-en/`, `fr-en/`);
- a folder holding a plain-text bitext `train.SRC` and `train.TGT` (one sentence per line, gzip allowed),
  e.g. the 348M-word selection Bahdanau et al.'s footnote points to.
Multi30k and WMT14's newstest sets (small, checksummed files) go through `translation.load_split`.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ...common.data.sources import DataError
from ...common.io import atomic_write_json
from .files import checksums, load_split, parse_pair

CHUNK = 20_000  # pairs read, tokenised and written at a time
HUB_REPO = "wmt/wmt14"
# The revision is a config field: the hub's commit of wmt/wmt14 could not be verified offline when this was
# written. Runs record the commit that `main` resolved to, and the cache is keyed by it.
HUB_DEFAULT_REVISION = "main"

Chunks = Iterator[tuple[list[str], list[str]]]


@dataclass(frozen=True)
class Bitext:
    """A training bitext: `chunks()` streams (src texts, tgt texts) from the start on every call."""

    description: str  # for messages and provenance
    key: str  # content identity: checksums, or the hub commit
    chunks: Callable[[], Chunks]
    provenance: dict


@dataclass(frozen=True)
class PairChunks:
    """A bitext's `chunks` that also names its (src, tgt) languages: word vocabularies Moses-tokenise each side
    in its own language (`vocab.vocabs_for_corpus` reads `langs`). Called, it streams like the plain function."""

    stream: Callable[[], Chunks]
    langs: tuple[str, str]

    def __call__(self) -> Chunks:
        return self.stream()


def hub_config(pair: str) -> str:
    src, tgt = parse_pair(pair)
    return "-".join(sorted((src, tgt), key=lambda lang: lang == "en"))  # HF names them de-en / fr-en


def training_bitext(cfg, cache_dir: Path) -> Bitext:
    """The training split of `cfg` (a DataConfig) as a streamed bitext, honouring train_limit."""
    if cfg.dataset == "wmt14" and cfg.train_split == "train":
        bitext = wmt14_train(cfg.pair, cfg.source, cfg.hub_revision, Path(cache_dir))
    else:
        bitext = _small_split(cfg.dataset, cfg.pair, cfg.train_split)
    if cfg.train_limit is not None:
        whole = bitext
        bitext = Bitext(f"{whole.description}, first {cfg.train_limit} pairs", f"{whole.key}|limit={cfg.train_limit}",
                        lambda: _limited(whole.chunks(), cfg.train_limit), whole.provenance)
    return dataclasses.replace(bitext, chunks=PairChunks(bitext.chunks, parse_pair(cfg.pair)))


def _limited(chunks: Chunks, limit: int) -> Chunks:
    left = limit
    for src, tgt in chunks:
        if left <= 0:
            return
        yield src[:left], tgt[:left]
        left -= len(src)


def _small_split(dataset: str, pair: str, split: str) -> Bitext:
    sums = checksums(dataset, pair, [split])
    key = hashlib.sha256(json.dumps(sums, sort_keys=True).encode()).hexdigest()

    def chunks() -> Chunks:
        data = load_split(dataset, pair, split)
        for start in range(0, len(data), CHUNK):
            rows = data[start : start + CHUNK]
            yield rows["src"], rows["tgt"]

    return Bitext(f"{dataset} {split} {pair}", key, chunks, sums)


def wmt14_train(pair: str, source: str, revision: str | None, cache_dir: Path) -> Bitext:
    src, tgt = parse_pair(pair)
    if source == "hub":
        folder, commit = _hub_snapshot(hub_config(pair), revision or HUB_DEFAULT_REVISION)
        files = _parquet_files(folder, pair)
        return Bitext(f"HF {HUB_REPO} {hub_config(pair)} train @ {commit}", f"hub:{HUB_REPO}@{commit}:{pair}",
                      lambda: _parquet_chunks(files, src, tgt),
                      {"wmt14/train": f"HF {HUB_REPO} revision {commit} ({len(files)} Parquet shards)"})
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise DataError(f"data.source={source} is not a folder; give 'hub', a folder of {HUB_REPO} Parquet shards "
                        f"(train-*.parquet) or a folder with train.{src} and train.{tgt} (gzip allowed)")
    text = [_text_file(folder, lang) for lang in (src, tgt)]
    if all(text):
        sums = {f"train.{lang}": file_sha256(path, cache_dir) for lang, path in zip((src, tgt), text)}
        return Bitext(f"plain-text bitext {text[0]} / {text[1]}", "text:" + json.dumps(sums, sort_keys=True),
                      lambda: _text_chunks(*text), {str(p): sums[f"train.{lang}"] for lang, p in zip((src, tgt), text)})
    files = _parquet_files(folder, pair, missing_text=[lang for lang, path in zip((src, tgt), text) if not path])
    sums = {str(p.relative_to(folder)): file_sha256(p, cache_dir) for p in files}
    return Bitext(f"Parquet shards of {HUB_REPO} in {folder}", "parquet:" + json.dumps(sums, sort_keys=True),
                  lambda: _parquet_chunks(files, src, tgt), {f"{folder}/{k}": v for k, v in sums.items()})


def _hub_snapshot(config: str, revision: str) -> tuple[Path, str]:
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(HUB_REPO, repo_type="dataset", revision=revision,
                                      allow_patterns=[f"{config}/train-*.parquet"]))
    except Exception as err:  # network and hub errors come in many types
        raise DataError(
            f"could not fetch {HUB_REPO} {config} training shards at revision {revision} from the HF hub ({err}). "
            "It needs the network once; offline, set data.source to a folder holding those Parquet shards "
            "or a plain-text bitext"
        ) from None
    return path, path.name  # snapshots/<commit>


def _text_file(folder: Path, lang: str) -> Path | None:
    for name in (f"train.{lang}", f"train.{lang}.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _parquet_files(folder: Path, pair: str, missing_text: list[str] | None = None) -> list[Path]:
    config = hub_config(pair)
    for where in (folder / config, folder):
        files = sorted(where.glob("train-*.parquet"))
        if files:
            return files
    text_note = f", nor train.{' / train.'.join(missing_text)} of a plain-text bitext" if missing_text else ""
    raise DataError(f"{folder} holds no {HUB_REPO} training shards ({config}/train-*.parquet or "
                    f"train-*.parquet){text_note}; put them there or point data.source elsewhere")


def _parquet_chunks(files: list[Path], src: str, tgt: str) -> Chunks:
    import pyarrow.parquet as pq

    for path in files:
        try:
            shard = pq.ParquetFile(path)
            for batch in shard.iter_batches(batch_size=CHUNK, columns=["translation"]):
                translation = batch.column("translation")
                yield translation.field(src).to_pylist(), translation.field(tgt).to_pylist()
        except (KeyError, OSError, ValueError) as err:
            raise DataError(f"{path} is not a {HUB_REPO} shard with translation.{src} and translation.{tgt} "
                            f"({err}); replace it with the hub's file") from None


def _open_text(path: Path):
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", encoding="utf-8") if gzipped else open(path, encoding="utf-8")


def _text_chunks(src_path: Path, tgt_path: Path) -> Chunks:
    with _open_text(src_path) as src_fh, _open_text(tgt_path) as tgt_fh:
        line = 0
        while True:
            src = [s.rstrip("\n") for s in itertools.islice(src_fh, CHUNK)]
            tgt = [t.rstrip("\n") for t in itertools.islice(tgt_fh, CHUNK)]
            if len(src) != len(tgt):
                raise DataError(f"{src_path} and {tgt_path} differ in length (one ends near line "
                                f"{line + min(len(src), len(tgt)) + 1}); a bitext needs one sentence per line in both")
            if not src:
                return
            line += len(src)
            yield src, tgt


def file_sha256(path: Path, cache_dir: Path) -> str:
    """sha256 of a file's bytes, remembered by (path, size, mtime) so that later runs and other ranks of a
    corpus of many GB do not hash it again."""
    stat = path.stat()
    memo_key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:24]
    memo = Path(cache_dir) / "sums" / f"{memo_key}.json"
    try:
        return json.loads(memo.read_text())["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    atomic_write_json(memo, {"path": str(path), "sha256": digest.hexdigest()})
    return digest.hexdigest()
