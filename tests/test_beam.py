import math

import pytest
import torch

from reproductions import registry
from reproductions.common.beam import beam_search, length_penalty
from reproductions.common.data.vocab import BOS_ID, EOS_ID, PAD_ID
from reproductions.translation.config import TranslationDecodeConfig as Decode

A, B = 4, 5


class MarkovToy:
    """p(y_i | y_{i-1}) from a fixed table, where the greedy first choice leads to a worse sentence."""

    table = {BOS_ID: {A: 0.6, B: 0.4}, A: {EOS_ID: 0.4, A: 0.3, B: 0.3}, B: {EOS_ID: 0.9, A: 0.05, B: 0.05}}

    def start(self, src):
        return {"src_len": (src != PAD_ID).sum(1)}

    def step(self, state, y_prev):
        log_probs = torch.full((y_prev.size(0), 6), float("-inf"))
        for row, prev in enumerate(y_prev.tolist()):
            for tok, p in self.table.get(prev, {EOS_ID: 1.0}).items():  # dead beams may hold any token
                log_probs[row, tok] = math.log(p)
        attention = torch.zeros(y_prev.size(0), 3)
        attention[:, 0] = 1.0
        return log_probs, state, attention


def test_beam_finds_the_better_sentence_that_greedy_misses():
    src = torch.tensor([[7, 8, EOS_ID]])
    greedy = beam_search(MarkovToy(), src, Decode(beam=1, length_penalty=0.0))[0]
    beam = beam_search(MarkovToy(), src, Decode(beam=2, length_penalty=0.0), keep_attention=True)[0]
    assert greedy.tokens == [A] and math.isclose(greedy.score, math.log(0.6 * 0.4), rel_tol=1e-6)
    assert beam.tokens == [B] and math.isclose(beam.score, math.log(0.4 * 0.9), rel_tol=1e-6)
    assert beam.attention.shape == (2, 3)  # one row per emitted token, </s> included


class EndsAtOnce(MarkovToy):
    """</s> right after <s> is the likeliest sentence: the empty translation of a hard source."""

    table = {BOS_ID: {EOS_ID: 0.7, A: 0.2, B: 0.1}, A: {EOS_ID: 0.8, B: 0.2}, B: {EOS_ID: 1.0}}


@pytest.mark.parametrize("beam", [1, 3])
def test_min_len_bars_the_empty_hypothesis_and_zero_allows_it(beam):
    src = torch.tensor([[7, 8, EOS_ID]])
    empty = beam_search(EndsAtOnce(), src, Decode(beam=beam, length_penalty=0.6, min_len=0))[0]
    assert empty.tokens == [] and math.isclose(empty.score, math.log(0.7), rel_tol=1e-6)  # lp(1) = 1
    hyp = beam_search(EndsAtOnce(), src, Decode(beam=beam, length_penalty=0.0))[0]  # min_len=1, the default
    assert hyp.tokens == [A] and math.isclose(hyp.score, math.log(0.2 * 0.8), rel_tol=1e-6)
    two = beam_search(EndsAtOnce(), src, Decode(beam=beam, length_penalty=0.0, min_len=2))[0]
    assert two.tokens == [A, B] and math.isclose(two.score, math.log(0.2 * 0.2), rel_tol=1e-6)


def _tiny_rnnsearch(vocab=30):
    torch.manual_seed(0)
    cfg = registry.get("bahdanau2014").load_config("tiny", ["model.init=torch"])
    return registry.get("bahdanau2014").build(cfg, vocab, vocab).eval()


def test_batched_beam_equals_one_sentence_at_a_time_and_scores_are_true_log_probs():
    model = _tiny_rnnsearch()
    src = torch.tensor([[5, 9, 12, 7, EOS_ID], [6, 11, EOS_ID, PAD_ID, PAD_ID], [8, EOS_ID, PAD_ID, PAD_ID, PAD_ID]])
    batched = beam_search(model, src, Decode(beam=4, length_penalty=0.6, max_len_b=6))
    for row, hyp in enumerate(batched):
        alone = beam_search(model, src[row : row + 1, : int((src[row] != PAD_ID).sum())],
                            Decode(beam=4, length_penalty=0.6, max_len_b=6))[0]
        assert alone.tokens == hyp.tokens
        assert math.isclose(alone.score, hyp.score, rel_tol=1e-4, abs_tol=1e-4)
        # The reported score is the model's own log p(y | x), normalised by the length penalty.
        tokens = hyp.tokens + [EOS_ID]
        tgt_in = torch.tensor([[BOS_ID] + tokens[:-1]])
        with torch.no_grad():
            logits, _ = model(src[row : row + 1], tgt_in)
        log_p = torch.log_softmax(logits, -1)[0, torch.arange(len(tokens)), torch.tensor(tokens)].sum().item()
        assert math.isclose(hyp.score, log_p / length_penalty(len(tokens), 0.6), rel_tol=1e-4, abs_tol=1e-4)


def test_hypotheses_respect_the_length_limit():
    model = _tiny_rnnsearch()
    src = torch.tensor([[5, 9, EOS_ID]])
    hyp = beam_search(model, src, Decode(beam=3, max_len_a=1.0, max_len_b=2))[0]
    assert len(hyp.tokens) + 1 <= 1.0 * 3 + 2 + 1


TRANSLATION = [r.name for r in registry.REPRODUCTIONS.values() if r.task == "translation"]


def _random_sources(vocab: int, batch: int = 6, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(4, vocab, (batch, 9), generator=gen)
    lengths = torch.tensor([9, 7, 5, 3, 8, 2])[:batch]
    src[torch.arange(9).unsqueeze(0) >= lengths.unsqueeze(1)] = PAD_ID
    src[torch.arange(batch), lengths - 1] = EOS_ID
    return src


@pytest.mark.parametrize("beam", [1, 5])
@pytest.mark.parametrize("name", TRANSLATION)
def test_cached_decoding_gives_the_hypotheses_of_recomputing_every_prefix(name, beam):
    """Incremental decoding (the Transformer's key/value cache; the RNNs' recurrent state) must find exactly
    what recomputing the whole prefix with the teacher-forced forward finds, sentence for sentence."""
    torch.manual_seed(0)
    vocab = 60
    repro = registry.get(name)
    model = repro.build(repro.load_config("tiny", ["model.dropout=0.0"]), vocab, vocab)
    model = model.double().eval()  # float64: no near-tie between candidates is decided by rounding
    src = _random_sources(vocab)
    cached = beam_search(model, src, Decode(beam=beam, length_penalty=0.6, max_len_b=8))
    recomputed = beam_search(model, src, Decode(beam=beam, length_penalty=0.6, max_len_b=8), cached=False)
    assert [h.tokens for h in cached] == [h.tokens for h in recomputed]
    assert max(len(h.tokens) for h in cached) >= 10, "degenerate test: the cache is hardly used"
    assert len({tuple(h.tokens) for h in cached}) == len(cached)
    for c, r in zip(cached, recomputed):
        assert math.isclose(c.score, r.score, rel_tol=1e-6)
