"""RNNsearch must learn to reverse sequences within a bounded number of CPU steps; the fixed-vector model
gets the same steps and is only required to train (its bottleneck is the point of the comparison)."""

import pytest
import torch
import torch.nn.functional as F

from reproductions import registry
from reproductions.common.beam import beam_search
from reproductions.common.data.vocab import BOS_ID, EOS_ID
from reproductions.translation.config import TranslationDecodeConfig

VOCAB, STEPS = 16, 400


def reverse_batch(gen: torch.Generator, batch: int = 64, length: int = 7):
    body = torch.randint(4, VOCAB, (batch, length), generator=gen)
    src = torch.cat([body, torch.full((batch, 1), EOS_ID)], dim=1)
    target = body.flip(1)
    tgt_in = torch.cat([torch.full((batch, 1), BOS_ID), target], dim=1)
    tgt_out = torch.cat([target, torch.full((batch, 1), EOS_ID)], dim=1)
    return src, tgt_in, tgt_out


def train_reverse(name: str) -> tuple[torch.nn.Module, float]:
    torch.manual_seed(0)
    repro = registry.get(name)
    cfg = repro.load_config("tiny", ["model.emb_dim=32", "model.hidden=64", "model.align_dim=32",
                                     "model.maxout_dim=32", "model.init=torch"])
    model = repro.build(cfg, VOCAB, VOCAB)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(STEPS):
        src, tgt_in, tgt_out = reverse_batch(gen)
        logits, _ = model(src, tgt_in)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return model.eval(), loss.item()


@pytest.mark.slow
def test_rnnsearch_learns_to_reverse():
    model, loss = train_reverse("bahdanau2014")
    src, _, tgt_out = reverse_batch(torch.Generator().manual_seed(123), batch=100)
    hyps = beam_search(model, src, TranslationDecodeConfig(beam=1))
    exact = sum(h.tokens == t[:-1].tolist() for h, t in zip(hyps, tgt_out))
    assert exact >= 90, f"only {exact}/100 held-out sequences reversed exactly (final loss {loss:.3f})"


@pytest.mark.slow
def test_rnnencdec_trains_on_the_same_task():
    _, loss = train_reverse("cho2014")
    assert loss < 2.0  # well below the uniform loss of log(16) = 2.77: it learns, just less well
