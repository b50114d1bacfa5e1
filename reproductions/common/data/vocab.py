"""Subword and word vocabularies, trained with HF `tokenizers` on the training split and cached.

Both kinds split on whitespace and punctuation with the Metaspace marker, so decoding restores the
original spacing and BLEU is computed on detokenised text against the raw references.
"""

from __future__ import annotations

import hashlib
import json
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

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode([i for i in ids if i > EOS_ID]).strip()

    def id_to_token(self, idx: int) -> str:
        return self.tokenizer.id_to_token(idx)

    def to_json(self) -> str:
        return self.tokenizer.to_str()

    @classmethod
    def from_json(cls, text: str) -> Vocab:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_str(text))


def train_vocab(texts: list[str], kind: str, size: int) -> Vocab:
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
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
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



def build_caption_vocab(captions: list[str], min_count: int, max_size: int, cache_dir: Path) -> Vocab:
    """Lower-cased words seen at least `min_count` times in the training captions (at most `max_size`
    entries, specials included); the rest map to <unk>. Cached by content like `build_vocabs`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    digest = hashlib.sha256("\n".join(captions).encode()).hexdigest()[:16]
    path = Path(cache_dir) / "vocab" / f"captions-{min_count}-{max_size}-{digest}.json"
    if path.exists():
        try:
            return Vocab.from_json(path.read_text())
        except Exception:  # a damaged cache entry is rebuilt, never trusted
            path.unlink(missing_ok=True)
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.WordLevelTrainer(vocab_size=max_size, min_frequency=min_count, special_tokens=SPECIALS,
                                        show_progress=False)
    tokenizer.train_from_iterator(captions, trainer=trainer, length=len(captions))
    vocab = Vocab(tokenizer)
    atomic_write_text(path, vocab.to_json())
    return vocab
