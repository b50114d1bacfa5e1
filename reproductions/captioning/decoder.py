"""The LSTM caption decoder shared by Show and Tell and Show, Attend and Tell; only the context block differs.

Xu et al. 2015 (arXiv:1502.03044v3) and Vinyals et al. 2015 (arXiv:1411.4555v2). Every model has the same
word embedding E, LSTM, deep output layer (Xu Eq. 7) and vocabulary. The context is a block that each paper's
folder defines and plugs into `Captioner`:

- `reproductions.vinyals2015.model.FixedImage` (Show and Tell): the image is the LSTM's input once, at t = -1;
  after that the LSTM sees only words. The fixed-vector bottleneck.
- `reproductions.xu2015.model.SoftAttention` and `HardAttention` (Show, Attend and Tell): a context z_t from
  the annotation vectors at every step, each with its own loss term (Eq. 14; the REINFORCE surrogate of Eq. 12).

A context block is an `nn.Module` with:
- `attends` (bool) and `lstm_input` (the size of z_t, 0 when there is none);
- `start(features (B, L, D), lstm, sample) -> state` with the LSTM's `h` and `c` before the first word;
- `forward(state, h_prev, sample) -> (z_t (B, lstm_input) or None, alpha_t (B, L) or None, extras)`;
- `loss(extras, step_mask, nll, loss_cfg) -> (a term summed over the batch or None, what to log)`.
Incremental decoding follows the `start`/`step` interface of `reproductions.common.beam`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..common.data.vocab import PAD_ID
from ..common.dropout import Dropout
from .config import CaptionLossConfig, CaptionModelConfig


class Captioner(nn.Module):
    """E, the LSTM and the deep output layer, around one context block."""

    def __init__(self, cfg: CaptionModelConfig, vocab_size: int, context: nn.Module):
        super().__init__()
        m, n = cfg.embed_dim, cfg.hidden_dim
        self.embed = nn.Embedding(vocab_size, m, padding_idx=PAD_ID)  # E
        self.context = context
        self.lstm = nn.LSTMCell(m + context.lstm_input, n)
        self.L_h = nn.Linear(n, m)
        self.L_z = nn.Linear(context.lstm_input, m, bias=False) if context.attends else None
        self.L_o = nn.Linear(m, vocab_size)
        self.dropout = Dropout(cfg.dropout)
        self.embedding_dropout, self.output_tanh = cfg.embedding_dropout, cfg.output_tanh
        self._register_load_state_dict_pre_hook(self._upgrade_state_dict)

    _MOVED = ("attention", "init_h", "init_c", "f_beta", "image_embed")  # on the decoder before context blocks

    def _upgrade_state_dict(self, state_dict, prefix, *args) -> None:
        """Checkpoints written before the context blocks were separate modules load: their context layers move under
        `context.`; the hard-attention baseline they kept outside the model starts from its current value."""
        for name in [k for k in state_dict if k.startswith(prefix)]:
            if name[len(prefix):].split(".")[0] in self._MOVED:
                state_dict[f"{prefix}context.{name[len(prefix):]}"] = state_dict.pop(name)
        for name, buffer in self.context.named_buffers():
            state_dict.setdefault(f"{prefix}context.{name}", buffer.clone())

    @property
    def attends(self) -> bool:
        return self.context.attends

    def _output(self, y_emb, h, z):
        """Deep output, Xu Eq. 7: logits = L_o(E y_{t-1} + L_h h_t + L_z z_t); with `output_tanh`, capgen.py's
        L_o(dropout(tanh(...))) instead of L_o(dropout(...))."""
        pre = y_emb + self.L_h(h)
        if z is not None:
            pre = pre + self.L_z(z)
        if self.output_tanh:
            pre = torch.tanh(pre)
        return self.L_o(self.dropout(pre))

    def _embed(self, y: torch.Tensor) -> torch.Tensor:
        """E y, dropped out unless `embedding_dropout` is off (capgen.py never drops the embeddings)."""
        y_emb = self.embed(y)
        return self.dropout(y_emb) if self.embedding_dropout else y_emb

    # -- incremental interface (beam search) -----------------------------------------------------
    def start(self, features: torch.Tensor, sample: bool = False) -> dict:
        """features (B, L, D) -> the decoder state before the first word."""
        assert features.dim() == 3, f"features must be (B, L, D), got {tuple(features.shape)}"
        return self.context.start(features, self.lstm, sample)

    def step(self, state: dict, y_prev: torch.Tensor):
        """One decoding step: (log-probabilities (B, V), new state, alpha (B, L) or None)."""
        logits, state, alpha, _ = self._step(state, y_prev, sample=False)
        return torch.log_softmax(logits.float(), dim=-1), state, alpha

    def _step(self, state: dict, y_prev: torch.Tensor, sample: bool):
        y_emb = self._embed(y_prev)  # (B, m)
        state, z, alpha, extra = self._recur(state, y_emb, sample)
        return self._output(y_emb, self.dropout(state["h"]), z), state, alpha, extra

    def _recur(self, state: dict, y_emb: torch.Tensor, sample: bool):
        """The recurrent part of a step: the context z_t (from h_{t-1}) and the LSTM -> (state with h_t, c_t;
        z_t (B, D) or None; alpha_t (B, L) or None; extras)."""
        z, alpha, extra = self.context(state, state["h"], sample)  # (B, D) or None, (B, L) or None
        inputs = y_emb if z is None else torch.cat([y_emb, z], dim=-1)
        h, c = self.lstm(inputs, (state["h"], state["c"]))
        return dict(state, h=h, c=c), z, alpha, extra

    # -- teacher forcing -------------------------------------------------------------------------
    def forward(self, features: torch.Tensor, captions_in: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """features (B, L, D), captions_in (B, T) starting with <s> -> logits (B, T, V) and per-step extras:
        `alpha` (B, T, L) for attention models; `location`, `log_p_s`, `entropy`, `sampled` (B, T) for hard
        attention while training. Only the recurrence runs step by step; the deep output, with the
        vocabulary projection, runs once over all (B, T) positions (the same function as `step`)."""
        sample = self.training
        state = self.start(features, sample=sample)
        y_emb = self._embed(captions_in)  # (B, T, m)
        hs, zs, extras = [], [], []
        for t in range(captions_in.size(1)):
            state, z, alpha, extra = self._recur(state, y_emb[:, t], sample)
            hs.append(state["h"])
            zs.append(z)
            extras.append(dict(extra, alpha=alpha) if alpha is not None else extra)
        z_all = None if zs[0] is None else torch.stack(zs, dim=1)
        logits = self._output(y_emb, self.dropout(torch.stack(hs, dim=1)), z_all)
        out = {key: torch.stack([e[key] for e in extras], dim=1) for key in (extras[0] if extras else [])}
        return logits, out

    def context_loss(self, extras: dict, step_mask: torch.Tensor, nll: torch.Tensor, cfg: CaptionLossConfig):
        """The context block's own term (Eq. 14 for soft, Eq. 12 for hard; none for Show and Tell), summed over
        the batch, and what to log. nll (B,) is each caption's summed -log p(y|a)."""
        return self.context.loss(extras, step_mask, nll, cfg)

