"""Caption metrics through pycocoevalcap (the coco-caption code): BLEU-1..4, METEOR, ROUGE-L and CIDEr-D,
on captions tokenised by its PTB tokenizer (Stanford CoreNLP; needs Java). Scores are x100.

pycocoevalcap's `Cider` is CIDEr-D (Vedantam et al. 2015, §4: Gaussian length penalty sigma 6, clipped
n-gram counts), with document frequencies from the references of the scored split. SPICE is not run:
it needs Stanford CoreNLP models that its first run downloads, and this tool runs offline.
"""

from __future__ import annotations

import shutil
from importlib import metadata

from .errors import AttnreproError

SPICE_UNAVAILABLE = ("SPICE needs the Stanford CoreNLP models that pycocoevalcap downloads on first use; "
                     "attnrepro runs offline, so SPICE is not computed (it is not zero)")


class MetricError(AttnreproError):
    pass


def caption_scores(hyps: list[str], refs: list[list[str]]) -> dict:
    """Corpus scores of hypotheses against their references (one list of references per hypothesis)."""
    if shutil.which("java") is None:
        raise MetricError("pycocoevalcap needs Java for its PTB tokenizer and METEOR; install a JRE "
                          "(e.g. apt-get install default-jre-headless) and try again")
    from pycocoevalcap.bleu.bleu import Bleu
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
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    meteor_score, _ = Meteor().compute_score(gts, res)  # its java process ends when the object is collected
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    scores = {f"bleu{n + 1}": round(100 * b, 2) for n, b in enumerate(bleu)}
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
            "meteor": "METEOR 1.5 (-l en -norm)",
            "rouge": "ROUGE-L (beta 1.2)",
            "cider": "CIDEr-D (sigma 6, clipped counts, idf over the scored split's references)",
            "scale": "x100",
        },
    })
    return scores


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
