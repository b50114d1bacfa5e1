"""The LSTM caption decoder shared by Show and Tell and Show, Attend and Tell; only the context differs.

Xu et al. 2015 (arXiv:1502.03044v3) and Vinyals et al. 2015 (arXiv:1411.4555v2). Every model has the same
word embedding E, LSTM, deep output layer (Xu Eq. 7) and vocabulary. The context is one of

- `fixed` (Show and Tell): the image, embedded by W_I, is the LSTM's input once, at t = -1 (Vinyals
  Eqs. 10-12); after that the LSTM sees only words. The fixed-vector bottleneck.
- `soft` (Xu §4.2): z_t = beta_t * sum_i alpha_ti a_i (Eq. 13) with alpha_t = softmax(f_att(a_i, h_{t-1}))
  (Eqs. 4-5) and the gate beta_t = sigmoid(f_beta(h_{t-1})) (§4.2.1).
- `hard` (Xu §4.1): z_t = a_{s_t} with s_t ~ Multinoulli(alpha_t) (Eqs. 8-9) while training; with
  probability `expected_prob` the step uses the expectation alpha instead (§4.1, last paragraph).
  Decoding uses the expectation (deterministic beam search).

For attention models h_0 and c_0 are MLPs of the mean annotation vector (§3.1.2). Incremental decoding
follows the `start`/`step` interface of `reproductions.common.beam`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from .attention import AdditiveAttention
from .data.vocab import PAD_ID
from .encoders import spec
from .translation_config import OptimConfig, TrainConfig


@dataclass
class CaptionDataConfig:
    dataset: Literal["flickr8k", "karpathy"] = "flickr8k"
    karpathy_json: str | None = None  # dataset_{flickr30k,coco}.json (Karpathy splits); dataset=karpathy only
    images_dir: str | None = None  # default: $ATTNREPRO_DATA/flickr8k/Images, or the JSON's folder
    train_split: str = "train"
    val_split: str = "dev"
    test_splits: list[str] = field(default_factory=lambda: ["test"])
    train_limit: int | None = None  # keep the first N images of the training split (tests)
    eval_limit: int | None = None  # keep the first N images of the validation and test splits
    encoder: Literal["efficientnet-lite0", "vgg19", "resnet101"] = "efficientnet-lite0"  # see encoders.ENCODERS
    min_word_count: int = 5  # words seen fewer times in the training captions become <unk>
    max_vocab: int = 10000  # Xu et al. §5.1: 10k words for COCO
    max_len: int = 30  # training captions are cut to this many tokens
    batch_size: int = 64  # captions per batch
    num_workers: int = 0


@dataclass
class CaptionModelConfig:
    context: Literal["fixed", "soft", "hard"] = "soft"
    embed_dim: int = 512  # m
    hidden_dim: int = 512  # n, the LSTM
    attention_dim: int = 512  # hidden layer of f_att
    dropout: float = 0.5
    gate: bool = True  # soft only: beta_t of §4.2.1


@dataclass
class CaptionLossConfig:
    doubly_stochastic: float = 1.0  # lambda of Eq. 14 (soft attention); 0 disables
    reinforce: float = 1.0  # lambda_r of Eq. 12 (hard attention)
    entropy: float = 0.01  # lambda_e of Eq. 12
    baseline_decay: float = 0.9  # b_k = 0.9 b_{k-1} + 0.1 log p(y | s_k, a) (§4.1)
    expected_prob: float = 0.5  # hard: probability of using alpha instead of a sample (§4.1)


@dataclass
class CaptionDecodeConfig:
    beam: int = 3
    length_penalty: float = 0.0  # alpha of ((5 + |y|) / 6) ** alpha; 0 ranks by log-probability
    max_len: int = 30
    batch_size: int = 50


@dataclass
class CaptionConfig:
    data: CaptionDataConfig = field(default_factory=CaptionDataConfig)
    model: CaptionModelConfig = field(default_factory=CaptionModelConfig)
    loss: CaptionLossConfig = field(default_factory=CaptionLossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: CaptionDecodeConfig = field(default_factory=CaptionDecodeConfig)


def doubly_stochastic_penalty(alphas: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
    """Xu et al. Eq. 14: sum_i (1 - sum_t alpha_ti)^2 per caption. alphas (B, T, L), step_mask (B, T) -> (B,)."""
    attended = (alphas * step_mask.unsqueeze(-1).to(alphas.dtype)).sum(1)  # (B, L)
    return ((1.0 - attended) ** 2).sum(-1)


class Captioner(nn.Module):
    def __init__(self, cfg: CaptionModelConfig, vocab_size: int, feature_dim: int, locations: int):
        super().__init__()
        self.context, self.gate = cfg.context, cfg.gate and cfg.context == "soft"
        m, n, D = cfg.embed_dim, cfg.hidden_dim, feature_dim
        self.locations, self.expected_prob = locations, 0.5
        self.embed = nn.Embedding(vocab_size, m, padding_idx=PAD_ID)  # E
        attends = cfg.context != "fixed"
        self.lstm = nn.LSTMCell(m + (D if attends else 0), n)
        if attends:
            self.attention = AdditiveAttention(n, D, cfg.attention_dim)  # f_att (Eq. 4), an MLP
            self.init_h = nn.Sequential(nn.Linear(D, n), nn.Tanh())  # f_init,h (§3.1.2)
            self.init_c = nn.Sequential(nn.Linear(D, n), nn.Tanh())  # f_init,c
            self.f_beta = nn.Linear(n, 1) if self.gate else None
            self.L_z = nn.Linear(D, m, bias=False)
        else:
            self.image_embed = nn.Linear(D, m)  # W_I of Vinyals Eq. 10, on the mean-pooled CNN feature
        self.L_h = nn.Linear(n, m)
        self.L_o = nn.Linear(m, vocab_size)
        self.dropout = nn.Dropout(cfg.dropout)

    # -- the pieces of one step ------------------------------------------------------------------
    def _attend(self, state: dict, h_prev: torch.Tensor, sample: bool):
        feats = state["features"]
        mask = torch.ones(feats.shape[:2], dtype=torch.bool, device=feats.device)
        expected, alpha = self.attention(h_prev, feats, feats, mask, projected_keys=state["keys"])
        extra = {}
        if self.context == "soft":
            z = expected
            if self.gate:
                z = torch.sigmoid(self.f_beta(h_prev)) * z  # Eq. 13 with the gate of §4.2.1
        elif sample:  # hard attention while training: s_t ~ Multinoulli(alpha), Eq. 8
            s = torch.multinomial(alpha, 1).squeeze(1)  # (B,)
            use_sample = torch.rand(alpha.size(0), device=alpha.device) >= self.expected_prob
            z = torch.where(use_sample.unsqueeze(1), feats[torch.arange(feats.size(0)), s], expected)
            extra = {
                "location": s,
                "sampled": use_sample,
                "log_p_s": torch.log(alpha.gather(1, s.unsqueeze(1)).squeeze(1).clamp_min(1e-12)),
                "entropy": -(alpha * torch.log(alpha.clamp_min(1e-12))).sum(-1),
            }
        else:  # hard attention at decoding time: the expected context (see module docstring)
            z = expected
        return z, alpha, extra

    def _output(self, y_emb, h, z):
        """Deep output, Xu Eq. 7: logits = L_o(E y_{t-1} + L_h h_t + L_z z_t)."""
        pre = y_emb + self.L_h(h)
        if z is not None:
            pre = pre + self.L_z(z)
        return self.L_o(self.dropout(pre))

    # -- incremental interface (beam search) -----------------------------------------------------
    def start(self, features: torch.Tensor) -> dict:
        """features (B, L, D) -> the decoder state before the first word."""
        mean = features.mean(1)
        if self.context == "fixed":
            zeros = features.new_zeros(features.size(0), self.lstm.hidden_size)
            h, c = self.lstm(self.image_embed(mean), (zeros, zeros))  # t = -1: the image, once
            return {"h": h, "c": c}
        return {"h": self.init_h(mean), "c": self.init_c(mean), "features": features,
                "keys": self.attention.project_keys(features)}

    def step(self, state: dict, y_prev: torch.Tensor):
        """One decoding step: (log-probabilities (B, V), new state, alpha (B, L) or None)."""
        logits, state, alpha, _ = self._step(state, y_prev, sample=False)
        return torch.log_softmax(logits.float(), dim=-1), state, alpha

    def _step(self, state: dict, y_prev: torch.Tensor, sample: bool):
        y_emb = self.dropout(self.embed(y_prev))
        alpha, z, extra = None, None, {}
        if self.context == "fixed":
            inputs = y_emb
        else:
            z, alpha, extra = self._attend(state, state["h"], sample)
            inputs = torch.cat([y_emb, z], dim=-1)
        h, c = self.lstm(inputs, (state["h"], state["c"]))
        logits = self._output(y_emb, self.dropout(h), z)
        return logits, dict(state, h=h, c=c), alpha, extra

    # -- teacher forcing -------------------------------------------------------------------------
    def forward(self, features: torch.Tensor, captions_in: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """features (B, L, D), captions_in (B, T) starting with <s> -> logits (B, T, V) and per-step extras:
        `alpha` (B, T, L) for attention models; `log_p_s`, `entropy`, `sampled` (B, T) for hard attention."""
        state = self.start(features)
        logits, extras = [], []
        for t in range(captions_in.size(1)):
            step_logits, state, alpha, extra = self._step(state, captions_in[:, t], sample=self.training)
            logits.append(step_logits)
            extras.append(dict(extra, alpha=alpha) if alpha is not None else extra)
        out = {}
        for key in extras[0] if extras else []:
            out[key] = torch.stack([e[key] for e in extras], dim=1)
        return torch.stack(logits, dim=1), out


def build(cfg: CaptionConfig, vocab_size: int) -> Captioner:
    encoder = spec(cfg.data.encoder)
    model = Captioner(cfg.model, vocab_size, encoder.dim, encoder.locations)
    model.expected_prob = cfg.loss.expected_prob
    return model
