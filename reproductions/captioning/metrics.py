"""Caption metrics through pycocoevalcap (the coco-caption code): BLEU-1..4, METEOR, ROUGE-L and CIDEr-D,
on captions tokenised by its PTB tokenizer (Stanford CoreNLP; needs Java). Scores are x100.

pycocoevalcap's `Cider` is CIDEr-D (Vedantam et al. 2015, §4: Gaussian length penalty sigma 6, clipped
n-gram counts), with document frequencies from the references of the scored split. SPICE is not run:
it needs Stanford CoreNLP models that its first run downloads, and this tool runs offline.
"""

from __future__ import annotations

import shutil
from importlib import metadata

from ..common.errors import AttnreproError

SPICE_UNAVAILABLE = ("SPICE needs the Stanford CoreNLP models that pycocoevalcap downloads on first use; "
                     "attnrepro runs offline, so SPICE is not computed (it is not zero)")


class MetricError(AttnreproError):
    pass


def require_java() -> None:
    """One clear error before any work when Java (pycocoevalcap's PTB tokenizer and METEOR) is missing."""
    if shutil.which("java") is None:
        raise MetricError("pycocoevalcap needs Java for its PTB tokenizer and METEOR; install a JRE "
                          "(e.g. apt-get install default-jre-headless) and try again")


def caption_scores(hyps: list[str], refs: list[list[str]]) -> dict:
    """Corpus scores of hypotheses against their references (one list of references per hypothesis)."""
    require_java()
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    if len(hyps) != len(refs) or not hyps:
        raise MetricError(f"{len(hyps)} hypotheses for {len(refs)} reference sets")
    tokenizer = PTBTokenizer()
    # Newlines would break the line-based tokenizer and METEOR's pipe: captions are one line each.
    gts = tokenizer.tokenize({i: [{"caption": " ".join(r.split())} for r in rs] for i, rs in enumerate(refs)})
    res = tokenizer.tokenize({i: [{"caption": " ".join(h.split()) or "."}] for i, h in enumerate(hyps)})
    bleu = coco_bleu(gts, res)
    meteor_score, _ = Meteor().compute_score(gts, res)  # its java process ends when the object is collected
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    scores = {f"bleu{n + 1}": round(100 * b, 2) for n, b in enumerate(bleu["bleu"])}
    # Xu et al. 2015 (§5) and Vinyals et al. 2015 report BLEU without the brevity penalty: beside pycocoevalcap's
    scores.update({f"bleu{n + 1}_nobp": round(100 * b, 2) for n, b in enumerate(bleu["bleu_nobp"])})
    scores.update({"bleu_length_ratio": round(bleu["ratio"], 4), "bleu_brevity_penalty": round(bleu["bp"], 4),
                   "bleu_hyp_len": bleu["hyp_len"], "bleu_ref_len": bleu["ref_len"]})
    scores.update({
        "meteor": round(100 * meteor_score, 2),
        "rouge_l": round(100 * rouge, 2),
        "cider_d": round(100 * float(cider), 2),
        "spice": None,
        "spice_unavailable": SPICE_UNAVAILABLE,
        "images": len(hyps),
        "references_per_image": sorted({len(r) for r in refs}),
        "settings": {
            "pycocoevalcap": metadata.version("pycocoevalcap"),
            "tokenizer": "PTBTokenizer (Stanford CoreNLP 3.4.1), punctuation removed",
            "bleu": "Bleu(4), option 'closest' reference length, with brevity penalty",
            "bleu_nobp": "the same counts without the brevity penalty (bleuN / bleu_brevity_penalty), as Xu et al. "
                         "2015 and Vinyals et al. 2015 report; bleu_length_ratio = hypothesis / closest reference "
                         "tokens over the corpus, bleu_brevity_penalty = exp(1 - 1/ratio) when ratio < 1, else 1",
            "meteor": "METEOR 1.5 (-l en -norm)",
            "rouge": "ROUGE-L (beta 1.2)",
            "cider": "CIDEr-D (sigma 6, clipped counts, idf over the scored split's references)",
            "scale": "x100",
        },
    })
    return scores


def coco_bleu(gts: dict, res: dict, n: int = 4) -> dict:
    """pycocoevalcap's corpus BLEU-1..n of PTB-tokenised captions (`gts`: id -> references, `res`: id -> [one
    hypothesis]), with and without its brevity penalty, and the lengths behind the penalty. pycocoevalcap's own
    `BleuScorer` counts n-grams and lengths exactly as its `Bleu(4)` does (option 'closest')."""
    import math

    from pycocoevalcap.bleu.bleu_scorer import BleuScorer

    if gts.keys() != res.keys():
        raise MetricError("hypotheses and references are for different images")
    scorer = BleuScorer(n=n)
    for key in gts:
        scorer += (res[key][0], gts[key])
    bleu, _ = scorer.compute_score(option="closest", verbose=0)
    hyp_len, ref_len = scorer.testlen(option="closest"), scorer.reflen(option="closest")
    ratio = hyp_len / ref_len if ref_len else 0.0
    bp = math.exp(1 - 1 / ratio) if 0 < ratio < 1 else (1.0 if ratio >= 1 else 0.0)
    nobp = [b / bp if bp else 0.0 for b in bleu]  # pycocoevalcap multiplies every BLEU-n by the same penalty
    return {"bleu": bleu, "bleu_nobp": nobp, "ratio": ratio, "bp": bp, "hyp_len": hyp_len, "ref_len": ref_len}


def per_image_cider(hyps: list[str], refs: list[list[str]]):
    """CIDEr-D (x100) of each hypothesis, with document frequencies from all of `refs`: the numbers whose
    mean is the corpus CIDEr-D, for paired significance tests between two systems on the same images."""
    import numpy as np
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": " ".join(r.split())} for r in rs] for i, rs in enumerate(refs)})
    res = tokenizer.tokenize({i: [{"caption": " ".join(h.split()) or "."}] for i, h in enumerate(hyps)})
    _, per_image = Cider().compute_score(gts, res)
    return 100 * np.asarray(per_image, dtype=float)
