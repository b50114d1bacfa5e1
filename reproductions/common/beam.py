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
def beam_search(
    model,
    src: torch.Tensor,
    beam: int = 5,
    alpha: float = 1.0,
    max_len_a: float = 1.5,
    max_len_b: int = 10,
    keep_attention: bool = False,
    cached: bool = True,
    min_len: int = 1,
) -> list[Hypothesis]:
    """src (B, S) token ids padded with PAD_ID -> the best hypothesis per sentence. A float `src` (image
    features, B x L x D) has no length: its hypotheses stop at `max_len_b` tokens. `cached=False` decodes
    through `RecomputePrefix(model)`. `min_len` tokens at least precede `</s>` (0 allows an empty hypothesis),
    except where a sentence's length limit forces the end."""
    if not cached:
        model = RecomputePrefix(model)
    batch, device = src.size(0), src.device
    if src.is_floating_point():
        src_len = torch.zeros(batch, dtype=torch.long, device=device)
    else:
        src_len = (src != PAD_ID).sum(1)  # (B,)
    state = _reorder(model.start(src), torch.arange(batch, device=device).repeat_interleave(beam), source_too=True)
    y_prev = torch.full((batch * beam,), BOS_ID, dtype=torch.long, device=device)
    scores = torch.full((batch, beam), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: keep one alive
    history = torch.empty((batch, beam, 0), dtype=torch.long, device=device)
    attn_history = None
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    sentence_max = (max_len_a * src_len + max_len_b).long()  # (B,)
    if hasattr(model, "max_decode_len"):  # e.g. a Transformer's table of positions
        sentence_max = sentence_max.clamp(max=model.max_decode_len)
    max_len = int(sentence_max.max().item())

    for t in range(max_len + 1):
        log_probs, state, attention = model.step(state, y_prev)  # (B*K, V)
        vocab = log_probs.size(-1)
        log_probs[:, PAD_ID] = log_probs[:, BOS_ID] = float("-inf")
        if t < min_len:
            log_probs[:, EOS_ID] = float("-inf")
        ending = (t >= sentence_max).repeat_interleave(beam)  # (B*K,) past its length limit: may only end
        if ending.any():
            eos_only = torch.full_like(log_probs[ending], float("-inf"))
            eos_only[:, EOS_ID] = log_probs[ending, EOS_ID].clamp(min=-1e4)
            log_probs[ending] = eos_only
        total = (scores.view(-1, 1) + log_probs).view(batch, beam * vocab)
        top_scores, top_index = total.topk(min(2 * beam, beam * vocab), dim=1)  # (B, 2K)
        origin, token = top_index // vocab, top_index % vocab
        is_eos = token == EOS_ID

        if attention is not None and keep_attention:
            step_attn = attention.float().view(batch, beam, -1)  # fp32 even under autocast
            attn_history = step_attn.unsqueeze(2) if attn_history is None else torch.cat(
                [attn_history, step_attn.unsqueeze(2)], dim=2
            )  # (B, K, t+1, S)

        # Finalise end-of-sentence candidates ranked within the top K (as in fairseq).
        eos_hits = (is_eos[:, :beam] & torch.isfinite(top_scores[:, :beam])).nonzero().tolist()
        for b, rank in eos_hits:
            if done[b] or len(finished[b]) >= beam:
                continue
            k = origin[b, rank].item()
            tokens = history[b, k].tolist()
            attn = attn_history[b, k].clone() if attn_history is not None else None
            norm = top_scores[b, rank].item() / length_penalty(len(tokens) + 1, alpha)
            finished[b].append(Hypothesis(tokens, norm, attn))
        done |= torch.tensor([len(f) >= beam for f in finished], device=device)
        if done.all() or t == max_len:
            break

        # Keep the K best candidates that did not end.
        rank_key = is_eos.float() * (2 * beam) + torch.arange(top_scores.size(1), device=device)
        keep = rank_key.argsort(dim=1)[:, :beam]  # (B, K)
        scores = top_scores.gather(1, keep).masked_fill(done.unsqueeze(1), float("-inf"))
        origin, token = origin.gather(1, keep), token.gather(1, keep)
        flat = (origin + torch.arange(batch, device=device).unsqueeze(1) * beam).view(-1)
        state = _reorder(state, flat)
        history = torch.cat([history.view(batch * beam, -1)[flat].view(batch, beam, -1), token.unsqueeze(2)], dim=2)
        if attn_history is not None:
            attn_history = attn_history.view(batch * beam, *attn_history.shape[2:])[flat].view(
                batch, beam, *attn_history.shape[2:]
            )
        y_prev = token.view(-1)

    best = []
    for b in range(batch):
        if not finished[b]:  # every beam fell off (cannot happen with the forced end, kept for safety)
            finished[b].append(Hypothesis([], float("-inf"), None))
        best.append(max(finished[b], key=lambda h: h.score))
    return best
