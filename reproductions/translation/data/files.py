"""Parallel text: Multi30k task 1 (every official split, any pair of en/de/fr/cs) and WMT14.

Splits come back as HF `datasets.Dataset`s with `src` and `tgt` columns of raw, untokenised text.
Files are found and verified by `sources.resolve` (data root from `ATTNREPRO_DATA`, else download).
"""

from __future__ import annotations

from ...common.data.sources import DataError, DataFile, data_root, read_lines

MULTI30K_COMMIT = "a3d2e0d26b56f3846f66a952536ffed4e401d05a"
MULTI30K_SPLITS = ("train", "val", "test_2016_flickr", "test_2017_flickr", "test_2017_mscoco", "test_2018_flickr")
MULTI30K_LANGS = ("en", "de", "fr", "cs")
OPUS_TESTSETS_COMMIT = "ac0f19c0be3cb4e0d9450fcb2d7a9847c4bdd180"
WMT14_SPLITS = ("newstest2012", "newstest2013", "newstest2014")

# sha256 of the decompressed text of multi30k/dataset@a3d2e0d26b56 data/task1/raw/{split}.{lang}.gz
_MULTI30K_SHA256 = {
    ("test_2016_flickr", "cs"): "45adb85f688de8407fddcbe1b36dca15d12aab868149b337e2576f2d6d2ff8d8",
    ("test_2016_flickr", "de"): "4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16",
    ("test_2016_flickr", "en"): "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182",
    ("test_2016_flickr", "fr"): "cb3160d69b002bb638e66cc7612fcd56cb0af82eadc9c142dedc438afb885ef6",
    ("test_2017_flickr", "de"): "c3078bc3b36808bf9d20eb2347ed6137016179ef59ec0d2b9b8ecc3fb2880081",
    ("test_2017_flickr", "en"): "ce1450ddc5ab0834502579d77a170849952e15a2938b34cc503bdc25ebb4fb98",
    ("test_2017_flickr", "fr"): "6f3764e31dac41e9455e612958bcfd4e877c5e15cd66df2c2b2be6d9bd83e5b6",
    ("test_2017_mscoco", "de"): "58277df3c75f92f7145a11b910b553d1cf82c439249d4dc237c899609eafac22",
    ("test_2017_mscoco", "en"): "43051fdfa86fd5395182e718a94ca67b1b227b9f7c79596ff0f6b813216981d2",
    ("test_2017_mscoco", "fr"): "39cde3f43f32b0a6bf29ce4917a46329ff32e53070c2fac87506695a740ae0a0",
    ("test_2018_flickr", "cs"): "1db59fe6980c9b3f9bade65122a985e71150214837d76f4768a5a8384c0b2dc7",
    ("test_2018_flickr", "de"): "39fcc8b3331d76fb42d648d019c6898b0d5e58baac87bc2a0bb93f44ec8db207",
    ("test_2018_flickr", "en"): "4e585c2dd525911a6ea7730e9d0b516239af3f1b1ffae6a2130223cfb639f25e",
    ("test_2018_flickr", "fr"): "234b4a887da0da4801a3e2c6f21336231ff7dd46daeb80cfa1b551c8bbb78239",
    ("train", "cs"): "2be68b38c8d586ff4f54eb13cc6e1baaaa053695b3f070d3038303a47f2268da",
    ("train", "de"): "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72",
    ("train", "en"): "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6",
    ("train", "fr"): "5925a3c18f1587b6b54b87743106e6e8ab93618edb6f65d19eac0621f853a10d",
    ("val", "cs"): "d53827e469b0a1ca8d57e9e26b2b64c4bc4b33f5479c7b03ae87ae5c882c3e33",
    ("val", "de"): "660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660",
    ("val", "en"): "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227",
    ("val", "fr"): "5304e444d842e962b2dda4d816b70b22a1765b15401642b7ca37a67477e708dc",
}
# sha256 of the decompressed text of multi30k/dataset@a3d2e0d26b56 data/task1/tok/{split}.lc.norm.tok.{lang}: the
# official lowercased, Moses-tokenised references the Multi30k literature scores against (metrics.lc_tok_bleu).
_MULTI30K_TOK_SHA256 = {
    ("test_2016_flickr", "cs"): "748c8816de928732365176e5c5d2f9bbabcec9b8d4448fba2d230feb057898a7",
    ("test_2016_flickr", "de"): "c6a33d39d48f9f510de147651316cd9d918e09ad0219df734a2f16b6baccacc4",
    ("test_2016_flickr", "en"): "5b7f32627cf99eced828311b955dae9800bb52bc8b91cf8b6526829e605b29d2",
    ("test_2016_flickr", "fr"): "1463bd5960f9bfe098ec3cd752d3df0c49c84dc646fb518964a29232658cd836",
    ("test_2017_flickr", "de"): "02067e4a9402786a4fcb8c1b6f4307e4a5073ced64800abead5273b54f5f31f6",
    ("test_2017_flickr", "en"): "c9d1dfd7a26add989382e534af235af9f0f658b2a30e7eb0efdaf142496ee54f",
    ("test_2017_flickr", "fr"): "c0583117a47b31e8a6c6a97cfe8de153e462074668f4e994764fcc80b21d33b4",
    ("val", "cs"): "b87ee4917f4a0f9ca6cca03e402026c9f4437dc1bd6a7dadfd2544ecfb6c5501",
    ("val", "de"): "97232bd273eceb7207f689527386a97e4be2616b18ada47576bdaf96c8ae1f00",
    ("val", "en"): "46573ce391ae227f1c72f873392436a20ef18e0a6d518098cfbd70b77c8572ec",
    ("val", "fr"): "b303e301aa21fe7822a846b2b3fb2d5a1121ec807cd5b1d006fb7b2b5507168a",
}
# sha256 of the text of Helsinki-NLP/OPUS-MT-testsets@ac0f19c0be3c datasets/statmt/wmt_newstest/...
_WMT14_SHA256 = {
    "2012/newstest2012.de": "946b9587b79271b0f3ce9cc8c0e5b310e3021ef598e1ba5dc2a24fef8960de30",
    "2012/newstest2012.en": "f9e51f85c4948033fc7d77ef427f4d88908a8dd3f778970f62d0baafac3ff97e",
    "2012/newstest2012.fr": "29aa5aff172127f6adf5625cc2f8e44f579d524700e84f1ec0eb14f4f19719e4",
    "2013/newstest2013.de": "d7ea35ab91ff3709e03ad9cb6bf5b4f2cc775cd2d72efd5254c4aec5e69663ca",
    "2013/newstest2013.en": "ace268a1d9724ca76f6d8e5c720ffdc08f01bdce45630ed8b269dc7918e1c16e",
    "2013/newstest2013.fr": "909b63be5df3eb8c13e1d5967bf3f0adfdb9f6ed5e638c5bffff563ee2ff7f41",
    "2014/en-de/newstest2014.de": "ae5d110486bc33d7175e9e28c7d0051eb3e5fcd2166dd93371089852c091a20e",
    "2014/en-de/newstest2014.en": "7294bccf2879a97b3706b95c9595f1459617a8ee7130d5d8581c910e69736971",
    "2014/en-fr/newstest2014.en": "9a12cb6e8efb3509ebede627e4a9c83ee64935509d561ff70f4b7bd5f93f6096",
    "2014/en-fr/newstest2014.fr": "2bd07dc204f965bf88e90adb6223a8cb850f9bf9840df6af1f4945195936656e",
}


def multi30k_file(split: str, lang: str) -> DataFile:
    if split not in MULTI30K_SPLITS:
        raise DataError(f"unknown Multi30k split '{split}'; the official splits are {', '.join(MULTI30K_SPLITS)}")
    if lang not in MULTI30K_LANGS:
        raise DataError(f"unknown Multi30k language '{lang}'; choose from {', '.join(MULTI30K_LANGS)}")
    if (split, lang) not in _MULTI30K_SHA256:
        raise DataError(f"Multi30k has no '{lang}' side for split '{split}' (Czech exists for train, val, "
                        "test_2016_flickr and test_2018_flickr only)")
    return DataFile(
        relpath=f"multi30k/task1/raw/{split}.{lang}.gz",
        url=f"https://raw.githubusercontent.com/multi30k/dataset/{MULTI30K_COMMIT}/data/task1/raw/{split}.{lang}.gz",
        text_sha256=_MULTI30K_SHA256[(split, lang)],
    )


def multi30k_tok_lines(split: str, lang: str) -> tuple[list[str], dict[str, str]]:
    """(lines, {relpath: text sha256}) of the official tokenised references of `split` (`A+B` concatenates);
    LookupError for a split or language without checksummed ones (the blind test sets, train)."""
    lines, relpaths = [], {}
    for part in split.split("+"):
        if (part, lang) not in _MULTI30K_TOK_SHA256:
            raise LookupError(f"no official tokenised Multi30k references for {part}.{lang} "
                              f"(shipped: {', '.join(sorted({s for s, _ in _MULTI30K_TOK_SHA256}))})")
        file = _multi30k_tok_file(part, lang)
        lines += read_lines(file)
        relpaths[file.relpath] = file.text_sha256
    return lines, relpaths


def _multi30k_tok_file(split: str, lang: str) -> DataFile:
    return DataFile(
        relpath=f"multi30k/task1/tok/{split}.lc.norm.tok.{lang}.gz",
        url=f"https://raw.githubusercontent.com/multi30k/dataset/{MULTI30K_COMMIT}/data/task1/tok/"
        f"{split}.lc.norm.tok.{lang}",
        text_sha256=_MULTI30K_TOK_SHA256[(split, lang)],
    )


def all_files() -> list[DataFile]:
    """Every checksummed translation file: Multi30k raw and tokenised sides, the WMT14 test sets."""
    return ([multi30k_file(split, lang) for split, lang in _MULTI30K_SHA256]
            + [_multi30k_tok_file(split, lang) for split, lang in _MULTI30K_TOK_SHA256]
            + [_wmt14_file(local) for local in _WMT14_SHA256])


def wmt14_file(split: str, lang: str, pair: str) -> DataFile:
    """newstest2012/2013 are multi-parallel; newstest2014 differs by pair (the full En-De and En-Fr sets)."""
    if split not in WMT14_SPLITS:
        raise DataError(f"unknown WMT14 split '{split}'; choose from {', '.join(WMT14_SPLITS)}")
    year = split[-4:]
    english_pair = "-".join(sorted(pair.split("-"), key=lambda lang_: lang_ != "en"))  # de-en -> en-de
    local = f"{year}/{english_pair}/{split}.{lang}" if year == "2014" else f"{year}/{split}.{lang}"
    if local not in _WMT14_SHA256:
        raise DataError(f"WMT14 has no {split} file for language '{lang}' of pair {pair}")
    return _wmt14_file(local)


def _wmt14_file(local: str) -> DataFile:
    """The WMT14 file `local` ('2013/newstest2013.de', '2014/en-de/newstest2014.de'); OPUS-MT-testsets names
    the 2014 pairs the other way round (de-en, fr-en)."""
    remote = local.replace("2014/en-de/", "2014/de-en/").replace("2014/en-fr/", "2014/fr-en/")
    return DataFile(
        relpath=f"wmt14/{local}.gz",
        url=f"https://raw.githubusercontent.com/Helsinki-NLP/OPUS-MT-testsets/{OPUS_TESTSETS_COMMIT}"
        f"/datasets/statmt/wmt_newstest/{remote}",
        text_sha256=_WMT14_SHA256[local],
    )


def parse_pair(pair: str) -> tuple[str, str]:
    parts = pair.split("-")
    if len(parts) != 2 or parts[0] == parts[1]:
        raise DataError(f"language pair '{pair}' must look like src-tgt, e.g. en-de")
    return parts[0], parts[1]


def split_files(dataset: str, pair: str, split: str) -> tuple[DataFile, DataFile]:
    src, tgt = parse_pair(pair)
    if dataset == "multi30k":
        return multi30k_file(split, src), multi30k_file(split, tgt)
    if dataset == "wmt14":
        return wmt14_file(split, src, pair), wmt14_file(split, tgt, pair)
    raise DataError(f"unknown dataset '{dataset}'; choose multi30k or wmt14")


def files_of(dataset: str, pair: str, split: str) -> list[DataFile]:
    """Every file of `split`, where "+" joins several splits (e.g. train+val)."""
    return [f for part in split.split("+") for f in split_files(dataset, pair, part)]


def split_available(dataset: str, pair: str, split: str) -> bool:
    """Whether `split` can be loaded here: present under the data root, or downloadable without one."""
    try:
        files = files_of(dataset, pair, split)
    except DataError:
        return False
    root = data_root()
    return root is None or all((root / f.relpath).exists() for f in files)


def load_split(dataset: str, pair: str, split: str, limit: int | None = None):
    """The split as a `datasets.Dataset` with columns `src` and `tgt` (raw text)."""
    import datasets

    if dataset == "wmt14" and split == "train":
        return wmt14_train(pair, limit)
    src, tgt = [], []
    for part in split.split("+"):  # e.g. newstest2012+newstest2013, Bahdanau et al.'s development set
        src_file, tgt_file = split_files(dataset, pair, part)
        src_part, tgt_part = read_lines(src_file), read_lines(tgt_file)
        if len(src_part) != len(tgt_part):
            raise DataError(
                f"{src_file.relpath} has {len(src_part)} lines but {tgt_file.relpath} has {len(tgt_part)}"
            )
        src, tgt = src + src_part, tgt + tgt_part
    if limit is not None:
        src, tgt = src[:limit], tgt[:limit]
    return datasets.Dataset.from_dict({"src": src, "tgt": tgt})


def wmt14_train(pair: str, limit: int | None = None):
    """WMT14 training bitext through HF `datasets` (needs the network the first time)."""
    import datasets

    src, tgt = parse_pair(pair)
    config = "-".join(sorted((src, tgt), key=lambda lang: lang == "en"))  # HF names it de-en / fr-en
    split = "train" if limit is None else f"train[:{limit}]"
    try:
        raw = datasets.load_dataset("wmt/wmt14", config, split=split)
    except Exception as err:
        raise DataError(
            f"could not load WMT14 {config} training data through HF datasets ({err}). It needs the network "
            "(or a populated HF cache); the paper configs are meant for machines that have both."
        ) from None
    return raw.map(lambda row: {"src": row["translation"][src], "tgt": row["translation"][tgt]},
                   remove_columns=raw.column_names)


def checksums(dataset: str, pair: str, splits: list[str]) -> dict[str, str]:
    """relpath -> text sha256 of every file the splits use (for the run's provenance)."""
    out = {}
    for split in splits:
        if dataset == "wmt14" and split == "train":
            out["wmt14/train"] = "HF datasets wmt/wmt14 (no pinned checksum)"
            continue
        for file in files_of(dataset, pair, split):
            out[file.relpath] = file.text_sha256
    return out
