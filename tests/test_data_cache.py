"""The paper-scale training data path: WMT14 training bitexts from Parquet shards in the HF schema or plain
text, tokenised once into a cache that a crash cannot leave half-usable, and batches whose
size per optimiser step does not depend on the number of processes."""

import gzip
import pickle
import random

import numpy as np
import pytest

from reproductions.common.data.batching import BatchBudgetError, TokenBudgetBatchSampler, accumulation_for
from reproductions.common.data.sources import DataError
from reproductions.translation.config import DataConfig
from reproductions.translation.data.cache import TokenCache, ensure_cache
from reproductions.translation.data.corpus import training_bitext
from reproductions.translation.data.datamodule import TranslationDataModule

EN = "the a man woman dog cat sees walks with in on park street house red blue old young".split()
DE = "der die ein mann frau hund katze sieht geht mit im auf park strasse haus rot blau alt jung".split()


def bitext(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Word-for-word 'translations' of 1 to 30 words (some longer than the tests' max_len)."""
    rng = random.Random(seed)
    src, tgt = [], []
    for _ in range(n):
        words = [rng.randrange(len(EN)) for _ in range(rng.randint(1, 30))]
        src.append(" ".join(EN[w] for w in words) + ".")
        tgt.append(" ".join(DE[w] for w in words) + ".")
    return src, tgt


def write_parquet_shards(folder, src, tgt, shards=2):
    """Shards as the HF hub serves wmt/wmt14: de-en/train-0000K-of-0000N.parquet, column translation{de, en}."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "de-en").mkdir(parents=True)
    step = -(-len(src) // shards)
    for k in range(shards):
        rows = [{"de": t, "en": s} for s, t in zip(src[k * step : (k + 1) * step], tgt[k * step : (k + 1) * step])]
        table = pa.table({"translation": pa.array(rows, type=pa.struct([("de", pa.string()), ("en", pa.string())]))})
        pq.write_table(table, folder / "de-en" / f"train-{k:05d}-of-{shards:05d}.parquet")


def config(source, **overrides) -> DataConfig:
    values = dict(dataset="wmt14", pair="en-de", train_split="train", val_split="newstest2013", eval_limit=10,
                  test_splits=["newstest2014"], source=str(source), vocab="word", vocab_size=40, joint_vocab=False,
                  max_len=20, max_tokens=200)
    return DataConfig(**{**values, **overrides})


def pairs_of(data) -> list[tuple[list[int], list[int]]]:
    items = (data.train_set[i] for i in range(len(data.train_set)))
    return [(e["src_ids"].tolist(), e["tgt_ids"].tolist()) for e in items]


def test_parquet_shards_and_a_gzipped_text_bitext_give_the_same_filtered_cache(data_root, tmp_path):
    src, tgt = bitext(500)
    write_parquet_shards(tmp_path / "shards", src, tgt)
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "train.en.gz").write_bytes(gzip.compress(("\n".join(src) + "\n").encode()))
    (tmp_path / "text" / "train.de").write_text("\n".join(tgt) + "\n")

    from_parquet = TranslationDataModule(config(tmp_path / "shards"), seed=1, cache_dir=tmp_path / "cache")
    from_parquet.load()
    from_text = TranslationDataModule(config(tmp_path / "text"), seed=1, cache_dir=tmp_path / "cache")
    from_text.load()

    # the length filter was applied while tokenising: every pair with a side over 20 tokens is gone
    words = [len(s.split()) + 1 for s in src]  # + the full stop
    assert from_parquet.dropped == sum(w > 20 for w in words) > 0
    kept = [(s, t) for s, t, w in zip(src, tgt, words) if w <= 20]
    assert len(from_parquet.train_set) == len(kept)
    for i in (0, 7, len(kept) - 1):
        item = from_parquet.train_set[i]
        assert from_parquet.src_vocab.decode(item["src_ids"].tolist()) == kept[i][0]
        assert from_parquet.tgt_vocab.decode(item["tgt_ids"].tolist()) == kept[i][1]
    assert pairs_of(from_text) == pairs_of(from_parquet)
    assert from_parquet.train_set.cache.path != from_text.train_set.cache.path  # keyed by the corpus
    assert any("parquet" in k for k in from_parquet.checksums) and "newstest2013" in str(from_text.checksums)


def test_missing_sources_are_clear_errors(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "train.en").write_text("a\n")
    with pytest.raises(DataError, match=r"half holds no wmt/wmt14 training shards .*nor train\.de"):
        training_bitext(config(tmp_path / "half"), tmp_path / "cache")
    with pytest.raises(DataError, match="data.source=.*nowhere is not a folder"):
        training_bitext(config(tmp_path / "nowhere"), tmp_path / "cache")
    (tmp_path / "half" / "train.de").write_text("a\nb\n")
    bad = training_bitext(config(tmp_path / "half"), tmp_path / "cache")
    with pytest.raises(DataError, match="train.en and .*train.de differ in length"):
        list(bad.chunks())


def test_a_half_written_or_damaged_cache_is_never_used(data_root, tmp_path, capsys):
    src, tgt = bitext(300, seed=2)
    write_parquet_shards(tmp_path / "shards", src, tgt, shards=1)
    data = TranslationDataModule(config(tmp_path / "shards"), seed=1, cache_dir=tmp_path / "cache")
    data.load()
    expected = pairs_of(data)
    built = data.train_set.cache.path
    assert "tokenised 300 pairs" in capsys.readouterr().err

    # a crash while building leaves only a temporary folder, which is not the cache
    (built.parent / f"{built.name}.tmp-12345").mkdir()
    again = TranslationDataModule(config(tmp_path / "shards"), seed=1, cache_dir=tmp_path / "cache")
    again.load()
    assert "tokenised" not in capsys.readouterr().err  # mapped, not rebuilt
    # a cache whose file was cut short is detected and rebuilt
    ids = built / "tgt.ids"
    ids.write_bytes(ids.read_bytes()[:-6])
    damaged = TranslationDataModule(config(tmp_path / "shards"), seed=1, cache_dir=tmp_path / "cache")
    damaged.load()
    err = capsys.readouterr().err
    assert "incomplete or damaged; rebuilding" in err and "tokenised 300 pairs" in err
    assert pairs_of(damaged) == expected
    # damage of the same size (one flipped bit: another token id) is caught by the checksums in meta.json
    ids = damaged.train_set.cache.path / "src.ids"
    raw = bytearray(ids.read_bytes())
    raw[0] ^= 0x01
    ids.write_bytes(bytes(raw))
    same_size = TranslationDataModule(config(tmp_path / "shards"), seed=1, cache_dir=tmp_path / "cache")
    same_size.load()
    assert "incomplete or damaged; rebuilding" in capsys.readouterr().err
    assert pairs_of(same_size) == expected
    # workers receive the cache's location, never copies of its arrays
    assert len(pickle.dumps(damaged.train_set.cache)) < 4096
    assert isinstance(damaged.train_set.cache.lengths("src"), np.memmap)


def test_ensure_cache_builds_once_for_concurrent_callers(data_root, tmp_path, capsys):
    from concurrent.futures import ThreadPoolExecutor

    src, tgt = bitext(200, seed=3)
    write_parquet_shards(tmp_path / "shards", src, tgt, shards=1)
    cfg = config(tmp_path / "shards")
    data = TranslationDataModule(cfg, seed=1, cache_dir=tmp_path / "first")
    data.load()
    capsys.readouterr()
    corpus = training_bitext(cfg, tmp_path / "cache")
    with ThreadPoolExecutor(3) as pool:
        caches = list(pool.map(lambda _: ensure_cache(corpus, data.src_vocab, data.tgt_vocab, 20, tmp_path / "cache"),
                               range(3)))
    assert capsys.readouterr().err.count("tokenised") == 1
    assert all(isinstance(c, TokenCache) and len(c) == len(data.train_set) for c in caches)


def test_sentence_batches_count_all_ranks_together():
    """App. B.2's 80 sentences per update stay 80 on 1, 2 or 4 processes: each rank takes its share."""
    lengths = [(i * 31) % 50 + 1 for i in range(5000)]

    def steps(world):
        ranks = [TokenBudgetBatchSampler(lengths, batch_sentences=80, seed=4, rank=r, world_size=world,
                                         global_batch=True).batches() for r in range(world)]
        assert len({len(r) for r in ranks}) == 1
        return [sorted(i for r in ranks for i in r[step]) for step in range(len(ranks[0]))]

    single = steps(1)
    assert steps(2) == single and steps(4) == single
    assert sorted(len(b) for b in single)[len(single) // 2] == 80


def test_accumulation_from_tokens_per_step():
    assert accumulation_for(25000, 3100, 1) == 8  # one GPU: 8 batches of ~3100 target tokens
    assert accumulation_for(25000, 3100, 8) == 1  # eight GPUs: one each
    assert accumulation_for(25000, 3100, 4) == 2
    with pytest.raises(BatchBudgetError, match=r"tokens_per_step=25000 .* 16 process.*max_tokens to about 1864"):
        accumulation_for(25000, 3100, 16, max_tokens=3700)  # one batch on each of 16 GPUs: ~50k tokens


def test_effective_tokens_per_step_do_not_depend_on_the_number_of_processes(data_root, tmp_path):
    src, tgt = bitext(3000, seed=5)
    write_parquet_shards(tmp_path / "shards", src, tgt)
    data = TranslationDataModule(config(tmp_path / "shards", max_tokens=120), seed=1, cache_dir=tmp_path / "cache")
    data.load()
    budgets = [data.step_budget(2000, world) for world in (1, 2, 4)]
    assert budgets[0].accumulate >= 8 and budgets[0].accumulate > budgets[1].accumulate > budgets[2].accumulate
    for budget in budgets:
        assert abs(budget.tgt_tokens - 2000) <= 200 and budget.src_tokens > 0


def test_the_hub_source_reads_the_pinned_snapshot_and_names_what_failed(data_root, tmp_path, monkeypatch):
    import huggingface_hub

    src, tgt = bitext(100, seed=6)
    snapshot = tmp_path / "hub" / "snapshots" / "0123abcd"
    write_parquet_shards(snapshot, src, tgt, shards=1)
    asked = {}

    def fake_download(repo_id, **kwargs):
        asked.update(kwargs, repo_id=repo_id)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    corpus = training_bitext(config("hub", hub_revision="0123abcd"), tmp_path / "cache")
    assert asked["repo_id"] == "wmt/wmt14" and asked["revision"] == "0123abcd"
    assert asked["allow_patterns"] == ["de-en/train-*.parquet"]
    assert "@0123abcd" in corpus.key and sum(len(s) for s, _ in corpus.chunks()) == 100

    def offline(repo_id, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(DataError, match="could not fetch wmt/wmt14 de-en .*revision main.*set data.source to a folder"):
        training_bitext(config("hub"), tmp_path / "cache")
