"""What a model produces for one input, with everything it attended to, as JSON-ready data: the answer of
`Task.attend` of both tasks (each wing's `attend.py`), for `attnrepro explore`, the report's gallery, the figures.

One answer, whatever the model:
    {"output": the best hypothesis (detokenised), "tokens": its tokens and </s>,
     "alternatives": [{"output", "score"}, ...]  every finished hypothesis of the beam, best first
                     (score: the length-normalised log-probability that ranks them),
     "attends": False for a fixed-vector model, whose "views" are then empty,
     "views": {name: view}}
A view of text over text (kind "matrix") has "rows" and "cols" (token labels) and "weights" as
[layer][head][row][col]: one layer and one head for RNNsearch's alignment (Bahdanau Fig. 3); every layer and head
of the Transformer's "encoder", "decoder" and "cross" attention (Vaswani Figs. 3-5), recorded in a teacher-forced
pass over the best hypothesis. A view over an image (kind "image") has "rows" (the words), "grid" (g: the g x g
locations of the feature map) and "weights" [word][location]; hard attention adds "locations", one location per
word sampled from its map (Xu Eq. 8, seeded), beside the expected map that decoding uses (Figs. 2-3).
"""

from __future__ import annotations

import torch

from .beam import Hypothesis

MAX_SOURCE_TOKENS = 100  # longer inputs are refused: the explorer is for looking at sentences, not documents
SAMPLE_SEED = 0  # hard attention's sampled locations: the same picture for the same input


def nested(weights: torch.Tensor) -> list:
    """Attention weights as nested lists of floats (6 decimals), for JSON."""
    return weights.detach().float().cpu().numpy().round(6).tolist()


def alternatives(hyps: list[Hypothesis], vocab) -> list[dict]:
    """The beam's finished hypotheses, best first, as {output, score}."""
    return [{"output": vocab.decode(h.tokens), "score": round(h.score, 4)} for h in hyps]
