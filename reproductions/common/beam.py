"""Batched beam search (beam 1 is greedy) for any model with the incremental decoding interface:

    state = model.start(src)                               # dict of batch-first tensors
    log_probs, state, attention = model.step(state, y_prev)  # (N, V), dict, (N, S) or None

Finished hypotheses are ranked by log p(y|x) / lp(|y|) with lp = ((5 + |y|) / 6) ** alpha
(Wu et al. 2016, Eq. 14); alpha = 0 ranks by the raw log-probability.
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


def length_penalty(length: torch.Tensor | int, alpha: float):
    return ((5.0 + length) / 6.0) ** alpha


def _reorder(state: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: v.index_select(0, index) for k, v in state.items()}


@torch.no_grad()
def beam_search(
    model,
    src: torch.Tensor,
    beam: int = 5,
    alpha: float = 1.0,
    max_len_a: float = 1.5,
    max_len_b: int = 10,
    keep_attention: bool = False,
) -> list[Hypothesis]:
    """src (B, S) token ids padded with PAD_ID -> the best hypothesis per sentence. A float `src` (image
    features, B x L x D) has no length: its hypotheses stop at `max_len_b` tokens."""
    batch, device = src.size(0), src.device
    if src.is_floating_point():
        src_len = torch.zeros(batch, dtype=torch.long, device=device)
    else:
        src_len = (src != PAD_ID).sum(1)  # (B,)
    state = _reorder(model.start(src), torch.arange(batch, device=device).repeat_interleave(beam))
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
            step_attn = attention.view(batch, beam, -1)
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
