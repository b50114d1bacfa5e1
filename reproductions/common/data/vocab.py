"""Subword and word vocabularies, trained with HF `tokenizers` on the training split and cached.

- `bpe` splits on whitespace and punctuation with the Metaspace marker, so decoding restores the original
  spacing and BLEU is computed on detokenised text against the raw references.
- `word` (the papers' shortlists, Bahdanau et al. §4.1) counts the words of Moses-tokenised text, as
  GroundHog's preprocessing did (experiments/nmt/README.md: `tokenizer.perl -l LANG`, then `preprocess.py -v
  30000`): raw text goes through sacremoses' tokenizer of its language on the way in and its detokenizer on
  the way out (`MosesWordVocab`), so callers still see raw text.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from pathlib import Path

from ..io import atomic_write_text

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIALS = [PAD, UNK, BOS, EOS]
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)
# A word vocabulary's JSON: {MOSES_KEY: {"lang": ..., "format": ...}, "tokenizer": HF tokenizer JSON}. Subword
# vocabularies stay plain HF tokenizer JSON (their cache keys and checkpoints are unchanged).
MOSES_KEY = "attnrepro_moses"
MOSES_FORMAT = 1  # raise when the word pipeline changes: it is part of the vocabulary and token cache keys
MOSES_DEFAULT_LANG = "en"  # sacremoses' own default, for callers that name no language (tests, `train_vocab`)


class Vocab:
    """A trained tokenizer: text <-> ids (no BOS/EOS added here)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        assert [tokenizer.token_to_id(t) for t in SPECIALS] == [PAD_ID, UNK_ID, BOS_ID, EOS_ID]

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [enc.ids for enc in self.tokenizer.encode_batch(texts)]

    def tokens(self, text: str) -> list[str]:
        return self.tokenizer.encode(text).tokens

    def decode(self, ids: list[int], keep_unk: bool = False) -> str:
        """Text of `ids` without specials. `keep_unk`: unknown tokens stay, each as a word of its own `<unk>`
        (the output as Bahdanau et al. scored it, Table 1)."""
        if not keep_unk:
            return self.tokenizer.decode([i for i in ids if i > EOS_ID]).strip()
        pieces = ["\u2581" + UNK if i == UNK_ID else self.tokenizer.id_to_token(i) for i in ids
                  if i > EOS_ID or i == UNK_ID]
        return self.tokenizer.decoder.decode(pieces).strip() if pieces else ""

    def id_to_token(self, idx: int) -> str:
        return self.tokenizer.id_to_token(idx)

    def to_json(self) -> str:
        return self.tokenizer.to_str()

    @classmethod
    def from_json(cls, text: str) -> Vocab:
        """Either kind: a word vocabulary's JSON names its Moses language (`MosesWordVocab.to_json`)."""
        from tokenizers import Tokenizer

        stored = json.loads(text)
        if isinstance(stored, dict) and MOSES_KEY in stored:
            moses = stored[MOSES_KEY]
            if moses.get("format") != MOSES_FORMAT:
                raise ValueError(f"word vocabulary of format {moses.get('format')}; this code reads {MOSES_FORMAT}")
            return MosesWordVocab(Tokenizer.from_str(stored["tokenizer"]), moses["lang"])
        return cls(Tokenizer.from_str(text))


@lru_cache(maxsize=8)
def _moses_pair(lang: str):
    from sacremoses import MosesDetokenizer, MosesTokenizer

    return MosesTokenizer(lang=lang), MosesDetokenizer(lang=lang)


def moses_words(text: str, lang: str) -> str:
    """`text` as `tokenizer.perl -l LANG` splits it (sacremoses; no aggressive dash splitting), tokens joined
    by single spaces. Not escaped: `&`, `<`, `'` stay themselves, so vocabulary entries are the text's own
    characters and detokenising needs no unescaping."""
    return _moses_pair(lang)[0].tokenize(text, return_str=True, escape=False)


class MosesWordVocab(Vocab):
    """A word shortlist over Moses-tokenised text (Bahdanau et al. §4.1; GroundHog's preprocessing). Takes and
    returns raw text: `encode` Moses-tokenises it in `lang` first, `decode` Moses-detokenises the words."""

    def __init__(self, tokenizer, lang: str):
        super().__init__(tokenizer)
        self.lang = lang

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(moses_words(text, self.lang)).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [enc.ids for enc in self.tokenizer.encode_batch([moses_words(t, self.lang) for t in texts])]

    def tokens(self, text: str) -> list[str]:
        return self.tokenizer.encode(moses_words(text, self.lang)).tokens

    def decode(self, ids: list[int], keep_unk: bool = False) -> str:
        words = [UNK if i == UNK_ID else self.tokenizer.id_to_token(i) for i in ids
                 if i > EOS_ID or (keep_unk and i == UNK_ID)]
        return _moses_pair(self.lang)[1].detokenize(words, unescape=False).strip() if words else ""

    def to_json(self) -> str:
        return json.dumps({MOSES_KEY: {"lang": self.lang, "format": MOSES_FORMAT},
                           "tokenizer": self.tokenizer.to_str()})


def _moses_stream(texts: Iterable[str] | Iterable[list[str]], lang: str) -> Iterator[list[str]]:
    for item in texts:
        yield [moses_words(t, lang) for t in ([item] if isinstance(item, str) else item)]


def _word_model(tokenised: Iterable[list[str]], size: int, length: int | None):
    """An HF WordLevel tokenizer of the `size` most frequent words (the rest [UNK]) of Moses-tokenised text."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # the text is Moses-tokenised already
    trainer = trainers.WordLevelTrainer(vocab_size=size, special_tokens=SPECIALS, show_progress=False)
    tokenizer.train_from_iterator(tokenised, trainer=trainer, length=length)
    return tokenizer


def train_vocab(texts: Iterable[str] | Iterable[list[str]], kind: str, size: int,
                length: int | None = None, lang: str | None = None) -> Vocab:
    """Train on `texts`, any iterable of strings or of lists of strings (chunks): it is consumed as a
    stream, so the corpus is never held as Python strings (the trainer keeps only word counts). `lang`: the
    Moses language of a `word` vocabulary (default `MOSES_DEFAULT_LANG`); subwords ignore it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if length is None and isinstance(texts, list):
        length = len(texts)
    if kind == "word":  # the paper's shortlist: the `size` most frequent words, the rest [UNK] (§4.1)
        lang = lang or MOSES_DEFAULT_LANG
        return MosesWordVocab(_word_model(_moses_stream(texts, lang), size, length), lang)
    if kind != "bpe":
        raise ValueError(f"unknown vocabulary kind '{kind}' (bpe or word)")
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=SPECIALS, show_progress=False)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.train_from_iterator(texts, trainer=trainer, length=length)
    return Vocab(tokenizer)


def _word_pair(src_texts: Callable[[], Iterable], tgt_texts: Callable[[], Iterable], langs: tuple[str, str] | None,
               size: int, joint: bool) -> tuple[Vocab, Vocab]:
    """(src, tgt) word shortlists; each `*_texts()` gives a fresh stream of its side. A joint list counts both
    sides, each Moses-tokenised in its own language, and comes back as two `MosesWordVocab`s sharing one model."""
    src_lang, tgt_lang = langs or (MOSES_DEFAULT_LANG, MOSES_DEFAULT_LANG)
    if not joint:
        return (train_vocab(src_texts(), "word", size, lang=src_lang),
                train_vocab(tgt_texts(), "word", size, lang=tgt_lang))
    shared = _word_model(itertools.chain(_moses_stream(src_texts(), src_lang), _moses_stream(tgt_texts(), tgt_lang)),
                         size, None)
    if src_lang == tgt_lang:
        vocab = MosesWordVocab(shared, src_lang)
        return vocab, vocab
    return MosesWordVocab(shared, src_lang), MosesWordVocab(shared, tgt_lang)


def _word_key(kind: str, langs: tuple[str, str] | None) -> str:
    """What a word vocabulary's cache key adds: its Moses pipeline and languages (subword keys are unchanged)."""
    if kind != "word":
        return ""
    src_lang, tgt_lang = langs or (MOSES_DEFAULT_LANG, MOSES_DEFAULT_LANG)
    return f"moses{MOSES_FORMAT}-{src_lang}-{tgt_lang}-"


def build_vocabs(train, kind: str, size: int, joint: bool, cache_dir: Path,
                 langs: tuple[str, str] | None = None) -> tuple[Vocab, Vocab]:
    """(src, tgt) vocabularies for a `datasets.Dataset` with `src`/`tgt` columns, cached by content. `langs`:
    the (src, tgt) Moses languages of word vocabularies."""
    src_texts, tgt_texts = list(train["src"]), list(train["tgt"])
    digest = hashlib.sha256()
    for text in (*src_texts, "\0", *tgt_texts):
        digest.update(text.encode())
    key = f"{kind}-{size}-{'joint' if joint else 'split'}-{_word_key(kind, langs)}{digest.hexdigest()[:16]}"
    path = Path(cache_dir) / "vocab" / f"{key}.json"
    cached = _read_cached_pair(path, key)
    if cached is not None:
        return cached
    if kind == "word":
        src, tgt = _word_pair(lambda: src_texts, lambda: tgt_texts, langs, size, joint)
    elif joint:
        src = tgt = train_vocab(src_texts + tgt_texts, kind, size)
    else:
        src, tgt = train_vocab(src_texts, kind, size), train_vocab(tgt_texts, kind, size)
    _write_cached_pair(path, key, src, tgt)
    return src, tgt


def _pair_digest(src_json: str, tgt_json: str) -> str:
    return hashlib.sha256(f"{src_json}\0{tgt_json}".encode()).hexdigest()


def _read_cached_pair(path: Path, key: str) -> tuple[Vocab, Vocab] | None:
    """A cached (src, tgt) pair, or None (and the file removed) when it is missing, damaged or another entry's:
    each entry names its own key and the sha256 of its two vocabularies, so a file swapped in from another
    cache entry, or changed in place, is rebuilt, never trusted."""
    if not path.exists():
        return None
    try:
        stored = json.loads(path.read_text())
        if stored["key"] != key or stored["sha256"] != _pair_digest(stored["src"], stored["tgt"]):
            raise ValueError("not this entry")
        return Vocab.from_json(stored["src"]), Vocab.from_json(stored["tgt"])
    except Exception:  # unreadable JSON, missing keys, another entry's file, a tokenizer that will not load
        path.unlink(missing_ok=True)
        return None


def _write_cached_pair(path: Path, key: str, src: Vocab, tgt: Vocab) -> None:
    src_json, tgt_json = src.to_json(), tgt.to_json()
    atomic_write_text(path, json.dumps({"key": key, "sha256": _pair_digest(src_json, tgt_json),
                                        "src": src_json, "tgt": tgt_json}))


def vocabs_for_corpus(chunks: Callable[[], Iterator[tuple[list[str], list[str]]]], corpus_key: str, kind: str,
                      size: int, joint: bool, every: int, cache_dir: Path,
                      langs: tuple[str, str] | None = None) -> tuple[Vocab, Vocab]:
    """(src, tgt) vocabularies trained on a streamed bitext (`chunks()` yields (src texts, tgt texts) chunks
    anew on each call), keyed by the corpus' identity instead of its text. `every` > 1 trains on every
    every-th pair only (a sample spread over the whole corpus, for very large ones). `langs`: the (src, tgt)
    Moses languages of word vocabularies; by default those `chunks` carries (`corpus.PairChunks`)."""
    from filelock import FileLock

    langs = langs or getattr(chunks, "langs", None)
    if kind == "word" and langs is None:
        raise ValueError("a word vocabulary needs the languages of its Moses tokenizer: pass langs=(src, tgt)")
    key = hashlib.sha256(f"{corpus_key}|{kind}|{size}|{joint}|{every}".encode())
    if kind == "word":  # a new key for the Moses word lists: older (Metaspace) word caches are not read
        key.update(f"|{_word_key(kind, langs)}".encode())
    key = f"{kind}-{size}-{'joint' if joint else 'split'}-stream-{key.hexdigest()[:16]}"
    path = Path(cache_dir) / "vocab" / f"{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):  # DDP ranks started together: one trains, the others wait and read
        cached = _read_cached_pair(path, key)
        if cached is not None:
            return cached
        src, tgt = _train_pair(chunks, kind, size, joint, every, langs)
        _write_cached_pair(path, key, src, tgt)
    return src, tgt


def _train_pair(chunks, kind: str, size: int, joint: bool, every: int,
                langs: tuple[str, str] | None = None) -> tuple[Vocab, Vocab]:
    def side(which: int | None) -> Iterator[list[str]]:
        for pair in chunks():
            for index, texts in enumerate(pair):
                if which is None or which == index:
                    yield texts[::every] if every > 1 else texts

    if kind == "word":
        return _word_pair(lambda: side(0), lambda: side(1), langs, size, joint)
    if joint:
        vocab = train_vocab(side(None), kind, size)
        return vocab, vocab
    return train_vocab(side(0), kind, size), train_vocab(side(1), kind, size)
