"""Subword and word vocabularies, trained with HF `tokenizers` on the training split and cached.

Both kinds split on whitespace and punctuation with the Metaspace marker, so decoding restores the
original spacing and BLEU is computed on detokenised text against the raw references.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ..io import atomic_write_text

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIALS = [PAD, UNK, BOS, EOS]
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)


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
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_str(text))


def train_vocab(texts: Iterable[str] | Iterable[list[str]], kind: str, size: int,
                length: int | None = None) -> Vocab:
    """Train on `texts`, any iterable of strings or of lists of strings (chunks): it is consumed as a
    stream, so the corpus is never held as Python strings (the trainer keeps only word counts)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if kind == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=SPECIALS, show_progress=False)
    elif kind == "word":  # the paper's shortlist: the `size` most frequent words, the rest [UNK] (§4.1)
        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        trainer = trainers.WordLevelTrainer(vocab_size=size, special_tokens=SPECIALS, show_progress=False)
    else:
        raise ValueError(f"unknown vocabulary kind '{kind}' (bpe or word)")
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
    tokenizer.decoder = decoders.Metaspace()
    if length is None and isinstance(texts, list):
        length = len(texts)
    tokenizer.train_from_iterator(texts, trainer=trainer, length=length)
    return Vocab(tokenizer)


def build_vocabs(train, kind: str, size: int, joint: bool, cache_dir: Path) -> tuple[Vocab, Vocab]:
    """(src, tgt) vocabularies for a `datasets.Dataset` with `src`/`tgt` columns, cached by content."""
    src_texts, tgt_texts = list(train["src"]), list(train["tgt"])
    digest = hashlib.sha256()
    for text in (*src_texts, "\0", *tgt_texts):
        digest.update(text.encode())
    key = f"{kind}-{size}-{'joint' if joint else 'split'}-{digest.hexdigest()[:16]}"
    path = Path(cache_dir) / "vocab" / f"{key}.json"
    if path.exists():
        try:
            stored = json.loads(path.read_text())
            return Vocab.from_json(stored["src"]), Vocab.from_json(stored["tgt"])
        except Exception:  # unreadable JSON, missing keys, a tokenizer that will not load
            path.unlink(missing_ok=True)  # a damaged cache entry is rebuilt, never trusted
    if joint:
        src = tgt = train_vocab(src_texts + tgt_texts, kind, size)
    else:
        src, tgt = train_vocab(src_texts, kind, size), train_vocab(tgt_texts, kind, size)
    atomic_write_text(path, json.dumps({"src": src.to_json(), "tgt": tgt.to_json()}))
    return src, tgt


def vocabs_for_corpus(chunks: Callable[[], Iterator[tuple[list[str], list[str]]]], corpus_key: str, kind: str,
                      size: int, joint: bool, every: int, cache_dir: Path) -> tuple[Vocab, Vocab]:
    """(src, tgt) vocabularies trained on a streamed bitext (`chunks()` yields (src texts, tgt texts) chunks
    anew on each call), keyed by the corpus' identity instead of its text. `every` > 1 trains on every
    every-th pair only (a sample spread over the whole corpus, for very large ones)."""
    from filelock import FileLock

    key = hashlib.sha256(f"{corpus_key}|{kind}|{size}|{joint}|{every}".encode()).hexdigest()[:16]
    path = Path(cache_dir) / "vocab" / f"{kind}-{size}-{'joint' if joint else 'split'}-stream-{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):  # DDP ranks started together: one trains, the others wait and read
        if path.exists():
            try:
                stored = json.loads(path.read_text())
                return Vocab.from_json(stored["src"]), Vocab.from_json(stored["tgt"])
            except Exception:  # a damaged cache entry is rebuilt, never trusted
                path.unlink(missing_ok=True)
        src, tgt = _train_pair(chunks, kind, size, joint, every)
        atomic_write_text(path, json.dumps({"src": src.to_json(), "tgt": tgt.to_json()}))
    return src, tgt


def _train_pair(chunks, kind: str, size: int, joint: bool, every: int) -> tuple[Vocab, Vocab]:
    def side(which: int | None) -> Iterator[list[str]]:
        for pair in chunks():
            for index, texts in enumerate(pair):
                if which is None or which == index:
                    yield texts[::every] if every > 1 else texts

    if joint:
        vocab = train_vocab(side(None), kind, size)
        return vocab, vocab
    return train_vocab(side(0), kind, size), train_vocab(side(1), kind, size)
