import gzip
import json
import shutil

import pytest

from reproductions.common.data.batching import TokenBudgetBatchSampler, collate_pairs
from reproductions.common.data.sources import DataError
from reproductions.common.data.vocab import BOS_ID, EOS_ID, PAD_ID, build_vocabs
from reproductions.translation.data import files as translation


def test_multi30k_splits_are_read_with_their_sizes(data_root):
    val = translation.load_split("multi30k", "en-de", "val")
    assert len(val) == 1014 and set(val.column_names) == {"src", "tgt"}
    assert val[0]["src"].startswith("A group of men")
    test = translation.load_split("multi30k", "fr-cs", "test_2016_flickr", limit=5)
    assert len(test) == 5


def test_every_official_split_is_known_by_name():
    for split in translation.MULTI30K_SPLITS:
        src, tgt = translation.split_files("multi30k", "en-fr", split)
        assert src.relpath == f"multi30k/task1/raw/{split}.en.gz" and len(src.text_sha256) == 64
    with pytest.raises(DataError, match="unknown Multi30k split 'test2016'.*test_2016_flickr"):
        translation.split_files("multi30k", "en-de", "test2016")
    with pytest.raises(DataError, match="no 'cs' side for split 'test_2017_flickr'"):
        translation.split_files("multi30k", "en-cs", "test_2017_flickr")
    with pytest.raises(DataError, match="must look like src-tgt"):
        translation.split_files("multi30k", "english", "val")


def test_held_back_split_is_a_clear_error_naming_the_file(data_root):
    assert not translation.split_available("multi30k", "en-de", "test_2018_flickr")
    with pytest.raises(DataError, match=r"test_2018_flickr\.en\.gz not found.*ATTNREPRO_DATA"):
        translation.load_split("multi30k", "en-de", "test_2018_flickr")


def test_a_split_that_fails_its_checksum_is_refused(data_root, tmp_path, monkeypatch):
    raw = tmp_path / "multi30k" / "task1" / "raw"
    raw.mkdir(parents=True)
    for lang in ("en", "de"):
        shutil.copy(data_root / f"multi30k/task1/raw/val.{lang}.gz", raw / f"val.{lang}.gz")
    lines = gzip.decompress((raw / "val.de.gz").read_bytes()).decode().split("\n")
    lines[3] = lines[3].replace("e", "E")  # one changed line
    (raw / "val.de.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
    monkeypatch.setenv("ATTNREPRO_DATA", str(tmp_path))
    with pytest.raises(DataError, match=r"val\.de\.gz fails its checksum"):
        translation.load_split("multi30k", "en-de", "val")
    (raw / "val.en.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match=r"val\.en\.gz is not a readable gzip file"):
        translation.load_split("multi30k", "en-de", "val")


def test_wmt14_newstest_files(data_root):
    test = translation.load_split("wmt14", "en-fr", "newstest2014")
    assert len(test) == 3003 and test[0]["src"] == "Spectacular Wingsuit Jump Over Bogota"
    dev = translation.load_split("wmt14", "en-fr", "newstest2012+newstest2013")
    assert len(dev) == 3003 + 3000


def test_joint_bpe_round_trips_raw_text_and_is_cached(data_root, tmp_path):
    train = translation.load_split("multi30k", "en-de", "train", limit=2000)
    src_vocab, tgt_vocab = build_vocabs(train, "bpe", 1000, joint=True, cache_dir=tmp_path)
    assert src_vocab is tgt_vocab and len(src_vocab) == 1000
    for text in train["tgt"][:50]:
        assert src_vocab.decode(src_vocab.encode(text)) == text
    cached = list((tmp_path / "vocab").glob("*.json"))
    assert len(cached) == 1
    again, _ = build_vocabs(train, "bpe", 1000, joint=True, cache_dir=tmp_path)
    assert again.to_json() == src_vocab.to_json()
    cached[0].write_text("{broken")  # a damaged cache entry is rebuilt, not trusted
    rebuilt, _ = build_vocabs(train, "bpe", 1000, joint=True, cache_dir=tmp_path)
    assert rebuilt.encode("A dog runs.") == src_vocab.encode("A dog runs.")


def test_a_vocabulary_swapped_in_from_another_cache_entry_is_rebuilt(data_root, tmp_path):
    train = translation.load_split("multi30k", "en-de", "train", limit=300)
    other = translation.load_split("multi30k", "en-fr", "train", limit=300)
    ours, _ = build_vocabs(train, "bpe", 400, joint=True, cache_dir=tmp_path)
    theirs, _ = build_vocabs(other, "bpe", 400, joint=True, cache_dir=tmp_path)
    assert ours.to_json() != theirs.to_json()
    files = sorted((tmp_path / "vocab").glob("*.json"))
    assert len(files) == 2
    our_file = next(path for path in files if json.loads(path.read_text())["src"] == ours.to_json())
    their_file = next(path for path in files if path != our_file)
    our_file.write_bytes(their_file.read_bytes())  # a valid vocabulary, but another entry's
    again, _ = build_vocabs(train, "bpe", 400, joint=True, cache_dir=tmp_path)
    assert again.to_json() == ours.to_json()
    stored = json.loads(our_file.read_text())  # edited in place: the digest no longer matches, so it is rebuilt
    stored["src"] = stored["tgt"] = theirs.to_json()
    our_file.write_text(json.dumps(stored))
    again, _ = build_vocabs(train, "bpe", 400, joint=True, cache_dir=tmp_path)
    assert again.to_json() == ours.to_json()


def test_word_vocab_is_a_shortlist_with_unk(data_root, tmp_path):
    train = translation.load_split("multi30k", "en-de", "train", limit=500)
    src_vocab, tgt_vocab = build_vocabs(train, "word", 300, joint=False, cache_dir=tmp_path)
    assert len(src_vocab) == 300 and src_vocab is not tgt_vocab
    assert src_vocab.decode(src_vocab.encode("A man in a blue shirt.")) == "A man in a blue shirt."
    assert 1 in src_vocab.encode("A xylophonist.")  # <unk>


def test_token_budget_batches_cover_every_pair_once_and_respect_the_budget():
    lengths = [(i * 7919) % 40 + 1 for i in range(1000)]
    sampler = TokenBudgetBatchSampler(lengths, max_tokens=200, seed=3)
    batches = sampler.batches()
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert all(max(lengths[i] for i in b) * len(b) <= 200 for b in batches)
    sampler.set_epoch(1)
    assert sampler.batches() != batches  # a new order every epoch
    sampler.set_epoch(0)
    assert sampler.batches() == batches  # ...and the same order for the same (seed, epoch)


def test_ranks_get_disjoint_equal_shares():
    lengths = [(i * 31) % 25 + 1 for i in range(500)]
    shards = [TokenBudgetBatchSampler(lengths, batch_sentences=16, seed=1, rank=r, world_size=2).batches()
              for r in range(2)]
    assert len(shards[0]) == len(shards[1])
    seen = [i for shard in shards for b in shard for i in b]
    assert len(seen) == len(set(seen))


def test_collate_builds_shifted_targets():
    batch = collate_pairs([
        {"src_ids": [5, 6, 7], "tgt_ids": [8, 9], "index": 0},
        {"src_ids": [5], "tgt_ids": [8, 9, 10], "index": 1},
    ])
    assert batch["src"].tolist() == [[5, 6, 7, EOS_ID], [5, EOS_ID, PAD_ID, PAD_ID]]
    assert batch["tgt_in"].tolist() == [[BOS_ID, 8, 9, PAD_ID], [BOS_ID, 8, 9, 10]]
    assert batch["tgt_out"].tolist() == [[8, 9, EOS_ID, PAD_ID], [8, 9, 10, EOS_ID]]


def test_without_a_data_root_files_are_fetched_verified_and_cached(data_root, tmp_path, monkeypatch):
    from reproductions.common.data.sources import DataFile, resolve

    source = data_root / "multi30k/task1/raw/val.en.gz"
    good = translation.multi30k_file("val", "en")
    monkeypatch.delenv("ATTNREPRO_DATA")
    monkeypatch.setenv("ATTNREPRO_CACHE", str(tmp_path / "cache"))
    local = DataFile(relpath=good.relpath, url=str(source), text_sha256=good.text_sha256)
    path = resolve(local)
    assert path.is_relative_to(tmp_path / "cache") and gzip.decompress(path.read_bytes()).startswith(b"A group")
    wrong = DataFile(relpath="multi30k/task1/raw/other.en.gz", url=str(source), text_sha256="0" * 64)
    with pytest.raises(DataError, match="download of multi30k/task1/raw/other.en.gz .* fails its checksum"):
        resolve(wrong)
    assert not (tmp_path / "cache" / "data" / wrong.relpath).exists()
    leftovers = [p for p in (tmp_path / "cache" / "data").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_every_epoch_has_the_same_number_of_batches_under_a_token_budget():
    lengths = [(i * 7919) % 40 + 1 for i in range(3000)]
    sampler = TokenBudgetBatchSampler(lengths, max_tokens=300, seed=5, rank=1, world_size=2)
    counts = set()
    for epoch in range(6):
        sampler.set_epoch(epoch)
        counts.add(len(sampler.batches()))
    assert len(counts) == 1
    with pytest.raises(ValueError, match="cannot be shared by 4 processes"):
        TokenBudgetBatchSampler([3, 4], batch_sentences=2, world_size=4).batches()
