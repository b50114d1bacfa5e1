"""Show, Attend and Tell (Xu et al. 2015, arXiv:1502.03044v3): what makes it attend.

A CNN gives L annotation vectors a_1..a_L in R^D, one per image location (§3.1.1). At every word t the LSTM
decoder, in state h_{t-1}, weighs them with an MLP conditioned on its state,

    e_ti = f_att(a_i, h_{t-1})                       (Eq. 4; capgen.py: tanh(Wc_att a_i + W_d_att h_{t-1}), U_att)
    alpha_ti = exp(e_ti) / sum_k exp(e_tk)           (Eq. 5)

and reads a context z_t = phi({a_i}, {alpha_i}) into the LSTM (Eqs. 1-3) and the deep output (Eq. 7). The
initial state is h_0, c_0 = f_init(mean_i a_i) (§3.1.2). The two phi of the paper are the blocks below:

- soft (§4.2): z_t = beta_t sum_i alpha_ti a_i (Eq. 13), with the gate beta_t = sigmoid(f_beta(h_{t-1}))
  (§4.2.1), trained with the likelihood plus the doubly stochastic penalty lambda sum_i (1 - sum_t alpha_ti)^2
  (Eq. 14);
- hard (§4.1): z_t = a_{s_t} with s_t ~ Multinoulli(alpha_t) (Eqs. 8-9), trained with the REINFORCE estimator
  of Eq. 12: a moving-average baseline b, an entropy bonus lambda_e H[s], and for a given caption, with
  probability 0.5, the expected context alpha instead of the samples (§4.1, last paragraph). Decoding uses
  the expectation (deterministic beam search, capgen.py's default `sampling=False`).

The registry's `xu2015` entry fixes `model.context=soft`, `xu2015-hard` fixes `model.context=hard`. The
embeddings, LSTM, deep output and vocabulary are shared with the Show and Tell baseline
(`reproductions.vinyals2015`, whose block feeds the image once instead) in `reproductions.captioning.decoder`.
"""

from __future__ import annotations

import torch
from torch import nn

from reproductions.captioning.config import CaptionConfig, CaptionLossConfig, CaptionModelConfig
from reproductions.captioning.decoder import Captioner
from reproductions.captioning.encoders import spec
from reproductions.common.attention import AdditiveAttention, masked_softmax, weighted_sum
from reproductions.common.dropout import Dropout


def doubly_stochastic_penalty(alphas: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
    """Xu et al. Eq. 14: sum_i (1 - sum_t alpha_ti)^2 per caption. alphas (B, T, L), step_mask (B, T) -> (B,)."""
    attended = (alphas * step_mask.unsqueeze(-1).to(alphas.dtype)).sum(1)  # (B, L)
    return ((1.0 - attended) ** 2).sum(-1)


def reinforce_loss(reward: torch.Tensor, log_p_s: torch.Tensor, entropy: torch.Tensor, baseline: torch.Tensor,
                   reinforce: float, entropy_weight: float) -> torch.Tensor:
    """Xu et al. Eq. 12 as a surrogate to minimise, summed over captions. Per caption: `reward` = the mean
    log p(y_t|s,a) over its words, `log_p_s` = sum_t log p(s_t|a) of the sampled steps, `entropy` = sum_t H[s_t].
    Its gradient is -(lambda_r (reward - b) d log p(s|a) + lambda_e d H[s]): samples that explain the caption
    better than the baseline b become more likely. (The d log p(y|s,a) term comes from the likelihood loss.)

    The reward is per word, as in capgen.py (`masked_cost.mean(0)`, with the baseline tracking the per-word
    cost), so a caption's length does not set its advantage. capgen.py's `known_grads` on alpha,
    `(baseline_time - masked_cost.mean(0))/10. * (-alphas_sample/alphas)`, is this gradient with lambda_r = 0.1:
    its baseline and cost are -log p, so `baseline_time - cost` is our reward - b, and -s/alpha is
    -d log p(s|a)/d alpha. The signs agree (tests/test_capgen_reference.py checks it against a NumPy port)."""
    advantage = (reward - baseline).detach()
    return -(reinforce * advantage * log_p_s + entropy_weight * entropy).sum()


class AnnotationAttention(nn.Module):
    """What soft and hard attention share: f_att (Eq. 4, an MLP; capgen.py's optional deeper annotation
    projection) and the initial state h_0, c_0 = f_init(mean_i a_i) (§3.1.2)."""

    attends = True

    def __init__(self, cfg: CaptionModelConfig, feature_dim: int):
        super().__init__()
        D, n = feature_dim, cfg.hidden_dim
        self.lstm_input = D
        self.attention = AdditiveAttention(n, D, cfg.attention_dim)
        # capgen.py n_layers_att > 1: tanh(W_att_1 (Wc_att a_i + b)) before the state is added
        self.deep_keys = nn.Sequential(*[m for _ in range(cfg.attention_layers - 1)
                                         for m in (nn.Linear(cfg.attention_dim, cfg.attention_dim), nn.Tanh())])
        # capgen.py n_layers_init > 1: ReLU layers (ff_init_k) on the mean annotation before ff_state/ff_memory
        self.init_mlp = nn.Sequential(*[m for _ in range(cfg.init_layers - 1)
                                        for m in (nn.Linear(D, D), nn.ReLU(), Dropout(cfg.dropout))])
        self.init_h = nn.Sequential(nn.Linear(D, n), nn.Tanh())  # f_init,h
        self.init_c = nn.Sequential(nn.Linear(D, n), nn.Tanh())  # f_init,c

    def start(self, features: torch.Tensor, lstm: nn.LSTMCell, sample: bool) -> dict:
        mean = self.init_mlp(features.mean(1))  # (B, D)
        keys = self.deep_keys(self.attention.project_keys(features))  # (B, L, attention_dim)
        return {"h": self.init_h(mean), "c": self.init_c(mean), "features": features, "keys": keys}

    def _alpha(self, state: dict, h_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The expected context sum_i alpha_ti a_i (B, D) and alpha_t (B, L)."""
        feats = state["features"]
        e = self.attention.score(h_prev, state["keys"])  # e_ti = f_att(a_i, h_{t-1}), Eq. 4
        alpha = masked_softmax(e, None)  # Eq. 5 (in fp32 under bf16 autocast)
        return weighted_sum(alpha, feats), alpha


class SoftAttention(AnnotationAttention):
    """§4.2: the expected context, gated by beta_t (§4.2.1); Eq. 14 as the penalty."""

    def __init__(self, cfg: CaptionModelConfig, feature_dim: int):
        super().__init__(cfg, feature_dim)
        self.f_beta = nn.Linear(cfg.hidden_dim, 1) if cfg.gate else None

    def forward(self, state: dict, h_prev: torch.Tensor, sample: bool):
        z, alpha = self._alpha(state, h_prev)
        if self.f_beta is not None:
            z = torch.sigmoid(self.f_beta(h_prev)) * z  # Eq. 13 with the gate of §4.2.1
        return z, alpha, {}

    def loss(self, extras: dict, step_mask: torch.Tensor, nll: torch.Tensor, cfg: CaptionLossConfig):
        if cfg.doubly_stochastic <= 0:
            return None, {}
        penalty = doubly_stochastic_penalty(extras["alpha"], step_mask).sum()
        if cfg.capgen_scaling:  # capgen.py: alpha_c * ((1.-alphas.sum(0))**2).sum(0).mean(): sum over B, mean over L
            B, L = extras["alpha"].shape[0], extras["alpha"].shape[-1]
            return cfg.doubly_stochastic * B / L * penalty, {"doubly_stochastic": penalty / B}
        return cfg.doubly_stochastic * penalty, {"doubly_stochastic": penalty / step_mask.size(0)}


class HardAttention(AnnotationAttention):
    """§4.1: sampled locations while training, REINFORCE (Eq. 12) with a moving-average baseline (its state is
    a buffer here, so it travels in checkpoints and a resumed run continues it exactly)."""

    def __init__(self, cfg: CaptionModelConfig, feature_dim: int, expected_prob: float = 0.5):
        super().__init__(cfg, feature_dim)
        self.expected_prob = expected_prob
        self.register_buffer("reward_baseline", torch.zeros(()))
        self.register_buffer("baseline_steps", torch.zeros((), dtype=torch.long))

    def start(self, features: torch.Tensor, lstm: nn.LSTMCell, sample: bool) -> dict:
        state = super().start(features, lstm, sample)
        if sample:
            # §4.1: "with probability 0.5 for a given image, we set the sampled attention location s~ to its
            # expected value alpha": one draw per caption, for all its steps.
            # DEVIATION: capgen.py draws once per minibatch (trng.binomial((1,), p=semi_sampling_p)); the
            # paper's text says per image, which we follow.
            state["use_sample"] = torch.rand(features.size(0), device=features.device) >= self.expected_prob
        return state

    def forward(self, state: dict, h_prev: torch.Tensor, sample: bool):
        expected, alpha = self._alpha(state, h_prev)
        if not sample:  # decoding: the expected context (capgen.py's sampler, sampling=False)
            return expected, alpha, {}
        feats, use_sample = state["features"], state["use_sample"]
        s = torch.multinomial(alpha, 1).squeeze(1)  # s_t ~ Multinoulli(alpha), Eq. 8; (B,)
        z = torch.where(use_sample.unsqueeze(1), feats[torch.arange(feats.size(0), device=feats.device), s],
                        expected)
        return z, alpha, {
            "location": s,
            "sampled": use_sample,
            "log_p_s": torch.log(alpha.gather(1, s.unsqueeze(1)).squeeze(1).clamp_min(1e-12)),
            "entropy": -(alpha * torch.log(alpha.clamp_min(1e-12))).sum(-1),
        }

    def update_baseline(self, reward: torch.Tensor, decay: float) -> None:
        """b_k = decay * b_{k-1} + (1 - decay) * mean reward (§4.1; capgen.py `baseline_time`); the first batch
        sets b."""
        mean = reward.detach().mean()
        first = self.baseline_steps == 0
        self.reward_baseline.copy_(torch.where(first, mean, decay * self.reward_baseline + (1.0 - decay) * mean))
        self.baseline_steps += 1

    def loss(self, extras: dict, step_mask: torch.Tensor, nll: torch.Tensor, cfg: CaptionLossConfig):
        if "sampled" not in extras:  # evaluation: no samples, no REINFORCE
            return None, {}
        words = step_mask.sum(1).clamp_min(1)  # (B,)
        reward = -nll.detach() / words  # per-word log p(y|s,a), capgen.py's -masked_cost.mean(0)
        sampled = step_mask & extras["sampled"]
        log_p_s = (extras["log_p_s"] * sampled).sum(1)
        entropy = (extras["entropy"] * step_mask).sum(1)
        reinforce, entropy_weight = cfg.reinforce, cfg.entropy
        if cfg.capgen_scaling:  # capgen.py's known_grads sum over the B captions, its likelihood is their mean
            reinforce, entropy_weight = reinforce * step_mask.size(0), entropy_weight * step_mask.size(0)
        loss = reinforce_loss(reward, log_p_s, entropy, self.reward_baseline, reinforce, entropy_weight)
        self.update_baseline(reward, cfg.baseline_decay)
        return loss, {"reward_baseline": self.reward_baseline.clone(),
                      "attention_entropy": entropy.sum() / step_mask.sum()}


def build(cfg: CaptionConfig, vocab_size: int) -> Captioner:
    dim = spec(cfg.data.encoder).dim  # D of the annotation vectors a_i
    if cfg.model.context == "soft":
        return Captioner(cfg.model, vocab_size, SoftAttention(cfg.model, dim))
    if cfg.model.context == "hard":
        return Captioner(cfg.model, vocab_size, HardAttention(cfg.model, dim, cfg.loss.expected_prob))
    raise ValueError(f"xu2015 attends: model.context must be soft or hard, got '{cfg.model.context}'")
