"""Translation metrics. The primary score is sacreBLEU (BLEU and chrF on detokenised text against the raw
references, each with its signature); beside it, the tokenised BLEU the papers computed, so that our numbers
can be set against their tables:

- `tok_bleu`: hypotheses and references tokenised by the Moses tokenizer (sacremoses, the Python port of
  `tokenizer.perl`, with its default escaping), then corpus BLEU by sacreBLEU with `tokenize="none"`, cased,
  as `multi-bleu.perl` scored tokenised text. Into German, also the compound splitting of tensor2tensor's
  `get_ende_bleu.sh` (Vaswani et al. 2017's En-De script; fairseq's `compound_split_bleu.sh` does the same):
  a hyphen between two non-space characters becomes ` ##AT##-##AT## `. On WMT14 into German, the hypotheses
  (only) first go through `replace-unicode-punctuation.perl`, as that script does; Multi30k keeps the
  convention its recorded scores were computed in (no replacement; the signature says which).
- Bahdanau et al. 2014, Table 1: BLEU on all sentences, and on the sentences whose source and reference
  hold no word outside the model's shortlists ("No UNK"), with the unknown token kept in the hypotheses.
- `lc_tok_bleu` (Multi30k): lowercased hypotheses, punctuation-normalised and Moses-tokenised as the dataset's
  `scripts/task1-tokenize.sh` did, scored against the official `tok/SPLIT.lc.norm.tok.LANG` references.

A score is only comparable with another of the same signature; the leaderboard uses these functions too.
`translation_scores` is the one entry point the evaluation code calls.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from importlib import metadata

# tensor2tensor get_ende_bleu.sh: every "X-Y" with X, Y non-space becomes "X ##AT##-##AT## Y". Matches do not
# overlap, as in the Perl one-liner: "a-b-c" -> "a ##AT##-##AT## b-c" (the "b" is used up by the first match).
_COMPOUND = re.compile(r"(\S)-(\S)")
COMPOUND_SPLIT = r"\1 ##AT##-##AT## \2"
UNK_TEXT = "<unk>"  # how `Vocab.decode(..., keep_unk=True)` writes the unknown token; kept one token here


def corpus_scores(hyps: list[str], refs: list[str]) -> dict:
    from sacrebleu.metrics import BLEU, CHRF

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    bleu, chrf = BLEU(), CHRF()
    bleu_score = bleu.corpus_score(hyps, [refs])
    chrf_score = chrf.corpus_score(hyps, [refs])
    return {
        "bleu": round(bleu_score.score, 2),
        "chrf": round(chrf_score.score, 2),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "bleu_detail": str(bleu_score),
        "sentences": len(hyps),
    }


def bleu_by_length(srcs: list[str], hyps: list[str], refs: list[str], edges: list[int]) -> list[dict]:
    """Corpus BLEU of the sentences whose source has [lo, hi) whitespace-separated words."""
    from sacrebleu.metrics import BLEU

    bounds = list(edges) + [math.inf]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        idx = [i for i, s in enumerate(srcs) if lo <= len(s.split()) < hi]
        if not idx:
            continue
        score = BLEU().corpus_score([hyps[i] for i in idx], [[refs[i] for i in idx]]).score
        max_len = None if hi == math.inf else hi - 1
        out.append({"min_len": lo, "max_len": max_len, "n": len(idx), "bleu": round(score, 2)})
    return out


# -- tokenised BLEU --------------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _moses(lang: str):
    from sacremoses import MosesPunctNormalizer, MosesTokenizer

    return MosesTokenizer(lang=lang), MosesPunctNormalizer(lang=lang)


def compound_split(line: str) -> str:
    """Vaswani et al.'s En-De compound splitting of a tokenised line (tensor2tensor `get_ende_bleu.sh`)."""
    return _COMPOUND.sub(COMPOUND_SPLIT, line)


def moses_tokenize(line: str, lang: str, *, aggressive_dash: bool = False, lowercase: bool = False,
                   normalize: bool = False, split_compounds: bool = False, replace_unicode: bool = False) -> str:
    """One line through the Moses pipeline: [replace-unicode-punctuation] -> [lowercase] -> [normalize-punctuation]
    -> tokenizer (escaped) -> [compound split]. The unknown token `<unk>` stays one token."""
    tokenizer, normalizer = _moses(lang)
    if replace_unicode:  # sacremoses' port of replace-unicode-punctuation.perl
        line = normalizer.replace_unicode_punct(line)
    if lowercase:
        line = line.lower()
    if normalize:
        line = normalizer.normalize(line)
    line = tokenizer.tokenize(line, aggressive_dash_splits=aggressive_dash, return_str=True, escape=True,
                              protected_patterns=[re.escape(UNK_TEXT)])
    return compound_split(line) if split_compounds else line


def tok_bleu_signature(lang: str, *, aggressive_dash: bool = False, split_compounds: bool = False,
                       lowercase: bool = False, normalize: bool = False, replace_unicode_hyps: bool = False,
                       bleu=None) -> str:
    """Every step of a tokenised BLEU: the Moses settings, then sacreBLEU's own signature. The hypotheses' unicode
    replacement is named only where it was applied, so that earlier signatures stay as they were."""
    from sacrebleu.metrics import BLEU

    steps = [f"moses:sacremoses-{metadata.version('sacremoses')}", f"lang:{lang}",
             *(["hyp-unicode-punct:replaced"] if replace_unicode_hyps else []), "escape:yes",
             f"aggressive-dash:{'yes' if aggressive_dash else 'no'}",
             f"compound-split:{'##AT##' if split_compounds else 'no'}",
             f"norm-punct:{'yes' if normalize else 'no'}", f"lc:{'yes' if lowercase else 'no'}"]
    bleu = bleu or BLEU(tokenize="none", lowercase=lowercase)
    return ",".join(steps) + "|" + str(bleu.get_signature())


def tok_bleu(hyps: list[str], refs: list[str], lang: str, *, aggressive_dash: bool = False,
             split_compounds: bool = False, lowercase: bool = False, normalize: bool = False,
             refs_tokenized: bool = False, replace_unicode_hyps: bool = False) -> dict:
    """Corpus BLEU on Moses-tokenised text (sacreBLEU, `tokenize="none"`): `multi-bleu.perl`'s convention.

    `refs_tokenized`: the references are already tokenised (Multi30k's official `tok/` files) and are used as
    they are; otherwise they go through the same pipeline as the hypotheses. `replace_unicode_hyps`: the
    hypotheses, not the references, first go through replace-unicode-punctuation (tensor2tensor
    `get_ende_bleu.sh`)."""
    from sacrebleu.metrics import BLEU

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    options = dict(aggressive_dash=aggressive_dash, lowercase=lowercase, normalize=normalize,
                   split_compounds=split_compounds)
    tok_hyps = [moses_tokenize(h, lang, replace_unicode=replace_unicode_hyps, **options) for h in hyps]
    tok_refs = list(refs) if refs_tokenized else [moses_tokenize(r, lang, **options) for r in refs]
    bleu = BLEU(tokenize="none", lowercase=lowercase, force=True)  # force: the text is tokenised on purpose
    score = bleu.corpus_score(tok_hyps, [tok_refs])
    return {"score": round(score.score, 2), "detail": str(score),
            "signature": tok_bleu_signature(lang, aggressive_dash=aggressive_dash, split_compounds=split_compounds,
                                            lowercase=lowercase, normalize=normalize,
                                            replace_unicode_hyps=replace_unicode_hyps, bleu=bleu)}


def paper_tok_settings(pair: str) -> dict:
    """The tokenised-BLEU settings of the papers for a target language: into German, Vaswani et al.'s compound
    splitting (tensor2tensor `get_ende_bleu.sh`: `tokenizer.perl -l de`, no `-a`); otherwise plain
    `tokenizer.perl -l LANG` with Moses' defaults (no aggressive dash splitting). Bahdanau et al. say only "after
    a usual tokenization" (§4.1) and Vaswani et al. publish no En-Fr script: the defaults are our reading."""
    tgt = pair.split("-")[1]
    return {"lang": tgt, "split_compounds": tgt == "de", "aggressive_dash": False}


def no_unk_subset(hyps_with_unk: list[str], refs: list[str], no_unk: list[bool]) -> tuple[list[str], list[str]]:
    """Bahdanau et al. Table 1, "No UNK": the sentences whose source and reference hold no unknown word (in the
    model's shortlists); `no_unk[i]` says so for sentence i."""
    if not (len(hyps_with_unk) == len(refs) == len(no_unk)):
        raise ValueError(f"{len(hyps_with_unk)} hypotheses, {len(refs)} references, {len(no_unk)} no-UNK flags")
    idx = [i for i, ok in enumerate(no_unk) if ok]
    return [hyps_with_unk[i] for i in idx], [refs[i] for i in idx]


# -- the one entry point ---------------------------------------------------------------------------------------


def translation_scores(hyps: list[str], refs: list[str], *, dataset: str, pair: str, split: str,
                       hyps_with_unk: list[str] | None = None, no_unk: list[bool] | None = None,
                       srcs: list[str] | None = None, length_buckets: list[int] | None = None) -> dict:
    """Every score of one translated split, each with the signature that makes it comparable:

    - `bleu`, `chrf` (sacreBLEU on detokenised text; the primary metric), `sentences`;
    - `tok_bleu`, `tok_bleu_signature`: the papers' tokenised BLEU (`paper_tok_settings`), on `hyps_with_unk`
      when given (the output as the papers scored it, unknown tokens included: Table 1's "All");
    - `tok_bleu_no_unk`, `no_unk_sentences` when `no_unk` flags are given (Table 1's "No UNK");
    - Multi30k: `lc_tok_bleu`, `lc_tok_bleu_signature`, `lc_tok_refs` against the official tokenised
      references (or `lc_tok_bleu: None` with `lc_tok_bleu_unavailable` saying why);
    - `bleu_by_length` when `srcs` and `length_buckets` are given.
    """
    scores = corpus_scores(hyps, refs)
    papers_hyps = hyps_with_unk if hyps_with_unk is not None else hyps
    if len(papers_hyps) != len(refs):
        raise ValueError(f"{len(papers_hyps)} hypotheses (with unknown tokens) for {len(refs)} references")
    settings = paper_tok_settings(pair)
    lang = settings.pop("lang")
    # tensor2tensor get_ende_bleu.sh (Vaswani et al.'s newstest2014 En-De score): replace-unicode-punctuation.perl
    # -l de on the hypotheses before tokenizer.perl. WMT14 only: Multi30k's recorded tok_bleu stays as computed.
    settings["replace_unicode_hyps"] = dataset == "wmt14" and settings["split_compounds"]
    tok = tok_bleu(papers_hyps, refs, lang, **settings)
    scores.update({"tok_bleu": tok["score"], "tok_bleu_signature": tok["signature"],
                   "tok_bleu_detail": tok["detail"], "tok_bleu_unk_kept": hyps_with_unk is not None})
    if no_unk is not None:
        sub_hyps, sub_refs = no_unk_subset(papers_hyps, refs, no_unk)
        scores["no_unk_sentences"] = len(sub_hyps)
        scores["tok_bleu_no_unk"] = tok_bleu(sub_hyps, sub_refs, lang, **settings)["score"] if sub_hyps else None
    if dataset == "multi30k":
        scores.update(multi30k_lc_tok_bleu(hyps, pair, split, len(refs)))
    if srcs is not None and length_buckets:
        scores["bleu_by_length"] = bleu_by_length(srcs, hyps, refs, length_buckets)
    return scores


def multi30k_lc_tok_bleu(hyps: list[str], pair: str, split: str, n_refs: int) -> dict:
    """Lowercased tokenised BLEU against Multi30k's official `tok/SPLIT.lc.norm.tok.LANG` references: the
    hypotheses go through the dataset's own pipeline (lowercase, normalize-punctuation, tokenizer -l LANG).
    `n_refs` (the scored references) may be fewer than the file's lines when `data.eval_limit` cut the split:
    like the raw references, the first lines are used."""
    from .data.files import multi30k_tok_lines

    tgt = pair.split("-")[1]
    try:
        tok_refs, relpaths = multi30k_tok_lines(split, tgt)
    except LookupError as err:  # a split or language the dataset ships no tokenised references for
        return {"lc_tok_bleu": None, "lc_tok_bleu_unavailable": str(err)}
    if len(tok_refs) < n_refs:
        raise ValueError(f"{' + '.join(relpaths)} has {len(tok_refs)} lines for {n_refs} references")
    tok = tok_bleu(hyps, tok_refs[:n_refs], tgt, lowercase=True, normalize=True, refs_tokenized=True)
    return {"lc_tok_bleu": tok["score"], "lc_tok_bleu_signature": tok["signature"],
            "lc_tok_bleu_detail": tok["detail"], "lc_tok_refs": relpaths}


def no_unk_flags(src_vocab, tgt_vocab, srcs: list[str], refs: list[str]) -> list[bool]:
    """Per sentence: neither its source nor its reference holds a word outside the model's vocabularies
    (Bahdanau et al. Table 1's "No UNK" sentences)."""
    from ..common.data.vocab import UNK_ID

    src_ids, ref_ids = src_vocab.encode_batch(srcs), tgt_vocab.encode_batch(refs)
    return [UNK_ID not in s and UNK_ID not in r for s, r in zip(src_ids, ref_ids)]
