"""Translation metrics through sacreBLEU: corpus BLEU and chrF on detokenised text against the raw
references, each with its signature, and BLEU by source length (Bahdanau et al. 2014, Fig. 2).

A score is only comparable with another of the same signature; the leaderboard uses these functions too.
"""

from __future__ import annotations

import math


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
