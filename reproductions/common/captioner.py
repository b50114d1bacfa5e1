"""The LSTM caption decoder shared by Show and Tell and Show, Attend and Tell; only the context block differs.

Xu et al. 2015 (arXiv:1502.03044v3) and Vinyals et al. 2015 (arXiv:1411.4555v2). Every model has the same
word embedding E, LSTM, deep output layer (Xu Eq. 7) and vocabulary. The context is one of three blocks
with one interface (`start`, `forward`, `loss`):

- `FixedImage` (Show and Tell): the image, embedded by W_I, is the LSTM's input once, at t = -1 (Vinyals
  Eqs. 10-12); after that the LSTM sees only words. The fixed-vector bottleneck.
- `SoftAttention` (Xu §4.2): z_t = beta_t * sum_i alpha_ti a_i (Eq. 13) with alpha_t = softmax(f_att(a_i,
  h_{t-1})) (Eqs. 4-5), the gate beta_t = sigmoid(f_beta(h_{t-1})) (§4.2.1) and the doubly stochastic
  penalty of Eq. 14 as its loss.
- `HardAttention` (Xu §4.1): z_t = a_{s_t} with s_t ~ Multinoulli(alpha_t) (Eqs. 8-9) while training; for a
  given caption, with probability 0.5 every step uses the expectation alpha instead (§4.1, last paragraph).
  Its loss is the REINFORCE surrogate of Eq. 12 with a moving-average baseline. Decoding uses the
  expectation (deterministic beam search, the authors' default `sampling=False` in capgen.py).

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
from .dropout import Dropout
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
    # see encoders.ENCODERS
    encoder: Literal["efficientnet-lite0", "efficientnet-lite2", "vgg19", "resnet101"] = "efficientnet-lite0"
    encoder_weights: str | None = None  # a local weights file for vgg19/resnet101 (torchvision's .pth)
    feature_device: str = "auto"  # where features are extracted: auto (the GPU when there is one), cpu, cuda
    min_word_count: int = 5  # words seen fewer times in the training captions become <unk>
    max_vocab: int = 10000  # Xu et al. §5.1: 10k words for COCO
    max_len: int = 30  # training captions are cut to this many words
    batch_size: int = 64  # captions per batch
    num_workers: int = 0


@dataclass
class CaptionModelConfig:
    context: Literal["fixed", "soft", "hard"] = "soft"
    embed_dim: int = 512  # m
    hidden_dim: int = 512  # n, the LSTM
    attention_dim: int = 512  # hidden layer of f_att
    attention_layers: int = 1  # layers of f_att's annotation projection (capgen.py n_layers_att)
    init_layers: int = 1  # layers of f_init,h / f_init,c (capgen.py n_layers_init: extra ReLU layers first)
    dropout: float = 0.5
    gate: bool = True  # soft only: beta_t of §4.2.1
    # capgen.py (build_model, use_dropout) drops out h_t and the deep output's tanh'd sum, never E y_{t-1}.
    # DEVIATION (the default; the paper presets set false): E y_{t-1} is dropped too, at the LSTM input and in
    # the deep output.
    embedding_dropout: bool = True
    # capgen.py: `logit = tanh(logit)` between the deep output's sum and L_o; Eq. 7 has none. DEVIATION from
    # capgen.py (the default; the paper presets set true): Eq. 7 as printed.
    output_tanh: bool = False


@dataclass
class CaptionLossConfig:
    doubly_stochastic: float = 1.0  # lambda of Eq. 14 (soft attention); 0 disables
    # lambda_r of Eq. 12 on a per-word reward: capgen.py scales (baseline - mean_t cost) by 1/10.
    reinforce: float = 0.1
    entropy: float = 0.002  # lambda_e of Eq. 12 (capgen.py alpha_entropy_c=0.002)
    baseline_decay: float = 0.9  # b_k = 0.9 b_{k-1} + 0.1 log p(y | s_k, a) (§4.1)
    expected_prob: float = 0.5  # hard: probability that a caption uses alpha instead of samples (§4.1)
    # Weigh the context term against the likelihood as capgen.py does (tests/test_capgen_reference.py). Its
    # likelihood is the mean over the B captions of a minibatch (`cost.mean()`), its REINFORCE and entropy
    # gradients (`known_grads`) are sums over them and its Eq. 14 is `alpha_c * (...).sum(0).mean()`, a sum over
    # the captions and a mean over the L locations. So per caption its lambda_r, lambda_e count B times and its
    # lambda B / L times (64x; 64/196 = 0.33x with VGG-19). DEVIATION (the default false; the paper presets set
    # true): the lambdas apply per caption, as Eqs. 12 and 14 are written.
    capgen_scaling: bool = False


@dataclass
class CaptionDecodeConfig:
    beam: int = 3
    length_penalty: float = 0.0  # alpha of ((5 + |y|) / 6) ** alpha; 0 ranks by log-probability
    max_len: int = 30
    min_len: int = 1  # words before </s> at least; 0 lets a caption be empty
    batch_size: int = 50


@dataclass
class CaptionTrainConfig(TrainConfig):
    # §5.2: "early stopping on BLEU score": each validation greedily captions the validation images and logs
    # val/bleu4 (pycocoevalcap's BLEU on the whitespace tokens, no Java needed); best.ckpt is chosen on it.
    val_bleu: bool = True
    early_stopping_patience: int | None = None  # stop after this many validations without a better val/bleu4


@dataclass
class CaptionConfig:
    data: CaptionDataConfig = field(default_factory=CaptionDataConfig)
    model: CaptionModelConfig = field(default_factory=CaptionModelConfig)
    loss: CaptionLossConfig = field(default_factory=CaptionLossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: CaptionTrainConfig = field(default_factory=CaptionTrainConfig)
    decode: CaptionDecodeConfig = field(default_factory=CaptionDecodeConfig)


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


# -- context blocks ---------------------------------------------------------------------------------------------


class FixedImage(nn.Module):
    """Show and Tell: the image is the LSTM's input once, at t = -1 (Vinyals Eqs. 10-12); no per-step context."""

    attends, lstm_input = False, 0

    def __init__(self, cfg: CaptionModelConfig, feature_dim: int):
        super().__init__()
        self.image_embed = nn.Linear(feature_dim, cfg.embed_dim)  # W_I, on the mean-pooled CNN feature

    def start(self, features: torch.Tensor, lstm: nn.LSTMCell, sample: bool) -> dict:
        zeros = features.new_zeros(features.size(0), lstm.hidden_size)
        h, c = lstm(self.image_embed(features.mean(1)), (zeros, zeros))  # t = -1: the image, once
        return {"h": h, "c": c}

    def forward(self, state: dict, h_prev: torch.Tensor, sample: bool):
        return None, None, {}

    def loss(self, extras: dict, step_mask: torch.Tensor, nll: torch.Tensor, cfg: CaptionLossConfig):
        return None, {}


class _Attention(nn.Module):
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

    def _alpha(self, state: dict, h_prev: torch.Tensor):
        feats = state["features"]
        mask = torch.ones(feats.shape[:2], dtype=torch.bool, device=feats.device)
        return self.attention(h_prev, feats, feats, mask, projected_keys=state["keys"])  # (B, D), (B, L)


class SoftAttention(_Attention):
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


class HardAttention(_Attention):
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


# -- the decoder ------------------------------------------------------------------------------------------------


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

