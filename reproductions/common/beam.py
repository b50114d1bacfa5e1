"""Batched beam search (beam 1 is greedy) for any model with the incremental decoding interface:

    state = model.start(src)                               # dict of batch-first tensors
    log_probs, state, attention = model.step(state, y_prev)  # (N, V), dict, (N, S) or None

State entries named `src_*` must be functions of the source alone (encoder outputs, source masks, keys
projected from them): they are the same for every beam of a sentence, so they are expanded to the beams once
and never reordered. The Transformer caches keys/values (cost linear in the output length);
`cached=False` decodes through `RecomputePrefix` instead, the reference that recomputes the whole prefix.

Finished hypotheses are ranked by log p(y|x) / lp(|y|) with lp = ((5 + |y|) / 6) ** alpha
(Wu et al. 2016, Eq. 14); alpha = 0 ranks by the raw log-probability. `</s>` is barred before `min_len`
tokens (fairseq's `--min-len`, default 1 there and here): without it a hard sentence can end up empty, the
one-token "</s>" outscoring every normalised long hypothesis (Stahlberg & Byrne 2019, arXiv:1908.10090).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .data.vocab import BOS_ID, EOS_ID, PAD_ID
from .sections import DecodeConfig


@dataclass
class Hypothesis:
    tokens: list[int]  # without <s> and </s>
    score: float  # length-normalised log-probability
    attention: torch.Tensor | None  # (len(tokens) + 1, S): one row per emitted token, </s> included


def log_softmax_fp32(logits: torch.Tensor) -> torch.Tensor:
    """log-softmax over the vocabulary in at least fp32 (bf16 logits under autocast; float64 stays float64)."""
    return torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)


def length_penalty(length: torch.Tensor | int, alpha: float):
    return ((5.0 + length) / 6.0) ** alpha


def _reorder(state: dict[str, torch.Tensor], index: torch.Tensor, source_too: bool = False) -> dict[str, torch.Tensor]:
    return {k: v.index_select(0, index) if source_too or not k.startswith("src_") else v for k, v in state.items()}


class RecomputePrefix:
    """Incremental decoding the slow way, for any model whose teacher-forced `forward(src, tgt_in)` returns
    (logits (B, T, V), attention (B, T, S) or None): each step runs the whole prefix again and keeps the
    last position. The reference that cached decoders are tested and benchmarked against."""

    def __init__(self, model):
        self.model = model
        if hasattr(model, "max_decode_len"):
            self.max_decode_len = model.max_decode_len

    def start(self, src: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"src_tokens": src, "prefix": src.new_empty((src.size(0), 0), dtype=torch.long)}

    def step(self, state: dict[str, torch.Tensor], y_prev: torch.Tensor):
        prefix = torch.cat([state["prefix"], y_prev.unsqueeze(1)], dim=1)  # (N, t)
        logits, attention = self.model(state["src_tokens"], prefix)  # (N, t, V), (N, t, S) or None
        attention = None if attention is None else attention[:, -1]
        return log_softmax_fp32(logits[:, -1]), {**state, "prefix": prefix}, attention


@torch.no_grad()
def beam_search(model, src: torch.Tensor, decode: DecodeConfig, keep_attention: bool = False,
                cached: bool = True) -> list[Hypothesis]:
    """src (B, S) token ids padded with PAD_ID, or image features (B, L, D) -> the best hypothesis per input,
    decoded with `decode` (beam, length_penalty, min_len; `decode.max_tokens` bounds each output by its
    input's length, 0 for features). `min_len` tokens at least precede `</s>` (0 allows an empty hypothesis),
    except where an output's length limit forces the end. `cached=False` decodes through
    `RecomputePrefix(model)`."""
    return _search(model, src, decode, keep_attention, cached).best()


@torch.no_grad()
def beam_alternatives(model, src: torch.Tensor, decode: DecodeConfig,
                      keep_attention: bool = False) -> list[list[Hypothesis]]:
    """The same search as `beam_search`, -> every finished hypothesis per input (up to `decode.beam`), best first:
    the beam's alternatives that the explorer lists with their scores."""
    beams = _search(model, src, decode, keep_attention, True)
    beams.best()  # fills an input whose beams all fell off
    return [sorted(finished, key=lambda h: -h.score) for finished in beams.finished]


def _search(model, src: torch.Tensor, decode: DecodeConfig, keep_attention: bool, cached: bool) -> _Beams:
    if not cached:
        model = RecomputePrefix(model)
    batch, device = src.size(0), src.device
    sentence_max = _sentence_limits(model, src, decode)  # (B,)
    max_len = int(sentence_max.max().item())
    beam = decode.beam
    state = _reorder(model.start(src), torch.arange(batch, device=device).repeat_interleave(beam), source_too=True)
    beams = _Beams.start(batch, beam, device)
    for t in range(max_len + 1):
        log_probs, state, attention = model.step(state, beams.y_prev)  # (B*K, V)
        _bar_tokens(log_probs, t < decode.min_len, (t >= sentence_max).repeat_interleave(beam))
        top_scores, origin, token = beams.candidates(log_probs)
        if attention is not None and keep_attention:
            beams.add_attention(attention)
        beams.finish(top_scores, origin, token, decode.length_penalty)
        if beams.done.all() or t == max_len:
            break
        state = _reorder(state, beams.advance(top_scores, origin, token))
    return beams


def _sentence_limits(model, src: torch.Tensor, decode: DecodeConfig) -> torch.Tensor:
    """The most tokens each output may have (`decode.max_tokens` of its input's length; a float `src`, image
    features, has length 0)."""
    if src.is_floating_point():
        src_len = torch.zeros(src.size(0), dtype=torch.long, device=src.device)
    else:
        src_len = (src != PAD_ID).sum(1)  # (B,)
    sentence_max = decode.max_tokens(src_len)
    if hasattr(model, "max_decode_len"):  # e.g. a Transformer's table of positions
        sentence_max = sentence_max.clamp(max=model.max_decode_len)
    return sentence_max


def _bar_tokens(log_probs: torch.Tensor, before_min_len: bool, ending: torch.Tensor) -> None:
    """In place: <pad> and <s> never; </s> not before `min_len`; only </s> for a beam past its length limit."""
    log_probs[:, PAD_ID] = log_probs[:, BOS_ID] = float("-inf")
    if before_min_len:
        log_probs[:, EOS_ID] = float("-inf")
    if ending.any():
        eos_only = torch.full_like(log_probs[ending], float("-inf"))
        eos_only[:, EOS_ID] = log_probs[ending, EOS_ID].clamp(min=-1e4)
        log_probs[ending] = eos_only


@dataclass
class _Beams:
    """The K live hypotheses of each of B sentences and the finished ones."""

    batch: int
    beam: int
    scores: torch.Tensor  # (B, K) summed log-probabilities
    history: torch.Tensor  # (B, K, t) tokens so far
    y_prev: torch.Tensor  # (B*K,) the last token of each
    done: torch.Tensor  # (B,) K hypotheses finished
    finished: list[list[Hypothesis]]
    attn_history: torch.Tensor | None = None  # (B, K, t, S)

    @classmethod
    def start(cls, batch: int, beam: int, device) -> _Beams:
        scores = torch.full((batch, beam), float("-inf"), device=device)
        scores[:, 0] = 0.0  # all beams start identical: keep one alive
        return cls(batch, beam, scores, torch.empty((batch, beam, 0), dtype=torch.long, device=device),
                   torch.full((batch * beam,), BOS_ID, dtype=torch.long, device=device),
                   torch.zeros(batch, dtype=torch.bool, device=device), [[] for _ in range(batch)])

    def candidates(self, log_probs: torch.Tensor):
        """The 2K best continuations per sentence: (scores, the beam each extends, its token), each (B, 2K)."""
        vocab = log_probs.size(-1)
        total = (self.scores.view(-1, 1) + log_probs).view(self.batch, self.beam * vocab)
        top_scores, top_index = total.topk(min(2 * self.beam, self.beam * vocab), dim=1)
        return top_scores, top_index // vocab, top_index % vocab

    def add_attention(self, attention: torch.Tensor) -> None:
        step = attention.float().view(self.batch, self.beam, -1).unsqueeze(2)  # fp32 even under autocast
        self.attn_history = step if self.attn_history is None else torch.cat([self.attn_history, step], dim=2)

    def finish(self, top_scores: torch.Tensor, origin: torch.Tensor, token: torch.Tensor, alpha: float) -> None:
        """End-of-sentence candidates ranked within the top K become finished hypotheses (as in fairseq)."""
        hits = ((token[:, :self.beam] == EOS_ID) & torch.isfinite(top_scores[:, :self.beam])).nonzero().tolist()
        for b, rank in hits:
            if self.done[b] or len(self.finished[b]) >= self.beam:
                continue
            k = origin[b, rank].item()
            tokens = self.history[b, k].tolist()
            attn = self.attn_history[b, k].clone() if self.attn_history is not None else None
            norm = top_scores[b, rank].item() / length_penalty(len(tokens) + 1, alpha)
            self.finished[b].append(Hypothesis(tokens, norm, attn))
        self.done |= torch.tensor([len(f) >= self.beam for f in self.finished], device=self.done.device)

    def advance(self, top_scores: torch.Tensor, origin: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        """Keep the K best candidates that did not end; -> the flat index of the beam each continues."""
        batch, beam, device = self.batch, self.beam, self.scores.device
        rank_key = (token == EOS_ID).float() * (2 * beam) + torch.arange(top_scores.size(1), device=device)
        keep = rank_key.argsort(dim=1)[:, :beam]  # (B, K)
        self.scores = top_scores.gather(1, keep).masked_fill(self.done.unsqueeze(1), float("-inf"))
        origin, token = origin.gather(1, keep), token.gather(1, keep)
        flat = (origin + torch.arange(batch, device=device).unsqueeze(1) * beam).view(-1)
        self.history = torch.cat([self.history.view(batch * beam, -1)[flat].view(batch, beam, -1),
                                  token.unsqueeze(2)], dim=2)
        if self.attn_history is not None:
            shape = self.attn_history.shape[2:]
            self.attn_history = self.attn_history.view(batch * beam, *shape)[flat].view(batch, beam, *shape)
        self.y_prev = token.view(-1)
        return flat

    def best(self) -> list[Hypothesis]:
        for finished in self.finished:
            if not finished:  # every beam fell off (cannot happen with the forced end, kept for safety)
                finished.append(Hypothesis([], float("-inf"), None))
        return [max(finished, key=lambda h: h.score) for finished in self.finished]
