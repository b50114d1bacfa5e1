"""Show, Attend and Tell's training objective against a NumPy port of the authors' cost (kelvinxu/arctic-captions,
capgen.py at f4565bf): the same toy decoder state through both, the same parameter gradients after one global scale.

The port follows capgen.py in its own layout (time-major: x, mask (T, B); alphas (T, B, L)):
- likelihood, build_model: `masked_cost = cost * mask; cost = masked_cost.sum(0)`, then train(): `cost.mean()`,
  a mean over the B captions of each caption's summed -log p(y_t);
- doubly stochastic term (soft), train(): `alpha_c * ((1.-alphas.sum(0))**2).sum(0).mean()`: alphas.sum(0) sums
  over T, the next .sum(0) over the B captions, .mean() over the L locations;
- hard attention, train() with RL_sumCost=True: no cost but a gradient handed to Theano for `alphas`,
  `known_grads={alphas: (baseline_time - masked_cost.mean(0))[None,:,None]/10. * (-alphas_sample/alphas)
  + alpha_entropy_c*(tensor.log(alphas) + 1)}`, pushed back through the softmax that made alphas
  (lstm_cond_layer), added to the gradient of the likelihood, which reaches the attention only through
  alpha_sample = h * multinomial(alpha) + (1 - h) * alpha (the multinomial passes no gradient). Theano replaces,
  not adds, the cost's own gradient at a variable given in known_grads; the likelihood does not use the scan's
  `alphas` output, so nothing is lost.
- h: capgen.py draws one for the whole minibatch (`trng.binomial((1,), p=semi_sampling_p)`); ours draws one per
  caption (a DEVIATION in captioning/config.py). The port takes h per caption: capgen's expression, elementwise.

The toy decoder: word logits u_t + z_t W with the context z_t = sum_i alpha_sample_ti a_i, alpha_t = softmax(e_t);
u, e (and so every gradient that reaches a real model's parameters through them) are the inputs we differentiate.
capgen's gradients come from central finite differences of its cost (plus the known_grads, analytically through
the softmax); ours from autograd through `CaptionModule._loss` and the real `SoftAttention` / `HardAttention`
blocks. capgen's batches have one caption length (homogeneous_data.py), so the toy's captions all have T words.

The global scale: capgen's objective is a mean over captions, ours (`training_step`: loss / words) a mean over
words, so grad_capgen = (words / B) grad_ours. Under `loss.capgen_scaling` the relative weights of the likelihood,
REINFORCE, entropy and doubly stochastic terms must then agree exactly; without it ours weighs REINFORCE and the
entropy B times less per caption, and Eq. 14 L / B times more (asserted below too).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from reproductions import registry
from reproductions.captioning.module import CaptionModule
from reproductions.common.data.vocab import BOS_ID, PAD_ID

T, B, L, V, D = 4, 5, 6, 7, 3  # words per caption, captions, locations, vocabulary, annotation size


# -- the NumPy port of capgen.py's cost ----------------------------------------------------------------------------


@dataclass
class Toy:
    u: np.ndarray  # (T, B, V) word logits before the context
    e: np.ndarray  # (T, B, L) attention scores (lstm_cond_layer's alpha_pre)
    ctx: np.ndarray  # (B, L, D) annotation vectors a_i
    W: np.ndarray  # (D, V) the context's path to the word logits
    x: np.ndarray  # (T, B) target words
    mask: np.ndarray  # (T, B) 1 for a word (all ones: capgen's batches have one length)
    sample: np.ndarray  # (T, B) sampled locations s_t (trng.multinomial, fixed here)
    h: np.ndarray  # (B,) 1: the caption uses its samples, 0: the expectation alpha (semi_sampling_p)
    baseline_time: float = 0.0  # capgen.py's baseline_time: a moving average of the per-word cost -log p


def make_toy(h: list[int], seed: int = 0) -> Toy:
    rng = np.random.default_rng(seed)
    toy = Toy(u=rng.normal(size=(T, B, V)), e=rng.normal(size=(T, B, L)) * 1.5, ctx=rng.normal(size=(B, L, D)),
              W=rng.normal(size=(D, V)), x=rng.integers(PAD_ID + 1, V, size=(T, B)), mask=np.ones((T, B)),
              sample=rng.integers(0, L, size=(T, B)), h=np.asarray(h, dtype=float))
    # the batch's mean per-word cost: some captions beat the baseline, some do not
    toy.baseline_time = float(capgen_forward(toy, toy.u, toy.e)["masked_cost"].mean())
    return toy


def _softmax(a: np.ndarray) -> np.ndarray:
    a = np.exp(a - a.max(-1, keepdims=True))
    return a / a.sum(-1, keepdims=True)


def capgen_forward(toy: Toy, u: np.ndarray, e: np.ndarray) -> dict:
    alphas = _softmax(e)  # tensor.nnet.softmax(temperature_c * alpha), temperature 1
    h = toy.h[None, :, None]
    onehot = np.eye(L)[toy.sample]  # (T, B, L)
    alpha_sample = h * onehot + (1.0 - h) * alphas  # h_sampling_mask * multinomial + (1 - h_sampling_mask) * alpha
    ctxs = np.einsum("tbl,bld->tbd", alpha_sample, toy.ctx)  # ctx_ = (context * alpha_sample[:,:,None]).sum(1)
    logit = u + ctxs @ toy.W
    log_probs = logit - logit.max(-1, keepdims=True)
    log_probs = log_probs - np.log(np.exp(log_probs).sum(-1, keepdims=True))
    # -tensor.log(p_flat[...] + 1e-8): the 1e-8 (a guard against log 0) is left out here, as in ours
    cost = -np.take_along_axis(log_probs, toy.x[..., None], -1)[..., 0]  # (T, B)
    return {"masked_cost": cost * toy.mask, "alphas": alphas, "alpha_sample": alpha_sample}


def capgen_cost(toy: Toy, u: np.ndarray, e: np.ndarray, alpha_c: float) -> float:
    out = capgen_forward(toy, u, e)
    cost = out["masked_cost"].sum(0).mean()  # build_model: cost = masked_cost.sum(0); train(): cost.mean()
    if alpha_c > 0.0:
        cost += alpha_c * ((1.0 - out["alphas"].sum(0)) ** 2).sum(0).mean()  # train(): alpha_reg
    return float(cost)


def capgen_known_grads_on_e(toy: Toy, u: np.ndarray, e: np.ndarray, alpha_entropy_c: float) -> np.ndarray:
    """train(), RL_sumCost=True: the gradient Theano is told for alphas, through the softmax to e."""
    out = capgen_forward(toy, u, e)
    alphas, alpha_sample = out["alphas"], out["alpha_sample"]
    g = ((toy.baseline_time - out["masked_cost"].mean(0))[None, :, None] / 10.0 * (-alpha_sample / alphas)
         + alpha_entropy_c * (np.log(alphas) + 1.0))
    return alphas * (g - (g * alphas).sum(-1, keepdims=True))  # softmax's vector-Jacobian product


def _finite_differences(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        grad[i] = (f(up) - f(down)) / (2 * eps)
    return grad


def capgen_grads(toy: Toy, context: str, alpha_c: float = 1.0, alpha_entropy_c: float = 0.002):
    """d(capgen's objective)/d(u, e), time-major. alpha_c: evaluate_coco.py alpha-c=1. (soft only: hard attention
    in capgen.py keeps train()'s alpha_c=0.); alpha_entropy_c: train()'s default 0.002."""
    alpha_c = alpha_c if context == "soft" else 0.0
    gu = _finite_differences(lambda u: capgen_cost(toy, u, toy.e, alpha_c), toy.u)
    ge = _finite_differences(lambda e: capgen_cost(toy, toy.u, e, alpha_c), toy.e)
    if context == "hard":
        ge = ge + capgen_known_grads_on_e(toy, toy.u, toy.e, alpha_entropy_c)
    return gu, ge


# -- the same state through our code -------------------------------------------------------------------------------


class ToyDecoder(nn.Module):
    """Our context block on the toy state, in place of `Captioner`: its attention returns alpha_t = softmax(e_t),
    its word logits are u_t + z_t W. `CaptionModule._loss` calls `forward` and `context_loss`."""

    def __init__(self, context: nn.Module, toy: Toy):
        super().__init__()
        self.context = context
        self.u = nn.Parameter(torch.from_numpy(toy.u.transpose(1, 0, 2).copy()))  # (B, T, V)
        self.e = nn.Parameter(torch.from_numpy(toy.e.transpose(1, 0, 2).copy()))  # (B, T, L)
        self.W = torch.from_numpy(toy.W)
        self.locations = torch.from_numpy(toy.sample.T.copy())  # (B, T)
        self.use_sample = torch.from_numpy(toy.h.astype(bool))  # (B,)
        self.t = 0  # the step being decoded: the fake multinomial returns its sampled locations
        context._alpha = lambda state, h_prev: (
            torch.bmm(state["alpha_t"].unsqueeze(1), state["features"]).squeeze(1), state["alpha_t"])

    def forward(self, features: torch.Tensor, captions_in: torch.Tensor):
        alphas = torch.softmax(self.e, -1)  # (B, T, L)
        zs, extras = [], []
        for t in range(captions_in.size(1)):
            self.t = t
            state = {"features": features, "use_sample": self.use_sample, "alpha_t": alphas[:, t]}
            z, alpha, extra = self.context(state, None, self.training)
            zs.append(z)
            extras.append(dict(extra, alpha=alpha))
        logits = self.u + torch.stack(zs, 1) @ self.W  # (B, T, V)
        return logits, {key: torch.stack([x[key] for x in extras], 1) for key in extras[0]}

    def context_loss(self, extras, step_mask, nll, cfg):
        return self.context.loss(extras, step_mask, nll, cfg)


def our_grads(toy: Toy, name: str, overrides: list[str], monkeypatch):
    """d(our training objective, loss / words)/d(u, e), time-major, and words / B; and the hard block after."""
    repro = registry.get(name)
    cfg = repro.load_config("tiny", ["model.gate=false", *overrides])
    block = repro.build(cfg, V).context
    toy_model = ToyDecoder(block, toy)
    if name == "xu2015-hard":
        block.reward_baseline.fill_(-toy.baseline_time)  # our baseline tracks the reward log p = -capgen's cost
        block.baseline_steps.fill_(3)
        monkeypatch.setattr(torch, "multinomial", lambda probs, n: toy_model.locations[:, toy_model.t, None])
    module = CaptionModule(toy_model, cfg, name, vocab=None).train()
    targets = torch.from_numpy(toy.x.T.copy())  # (B, T)
    batch = {"features": torch.from_numpy(toy.ctx),
             "captions_in": torch.cat([torch.full((B, 1), BOS_ID), targets[:, :-1]], 1), "captions_out": targets}
    loss, _, words, _ = module._loss(batch)
    (loss / words).backward()  # what training_step returns
    grad = lambda p: p.grad.numpy().transpose(1, 0, 2)  # noqa: E731
    return grad(toy_model.u), grad(toy_model.e), float(words) / B, block


def _agree(ours, capgen) -> bool:
    gu, ge, scale = ours[:3]
    return (np.allclose(scale * gu, capgen[0], rtol=1e-5, atol=1e-8)
            and np.allclose(scale * ge, capgen[1], rtol=1e-5, atol=1e-8))


SAMPLING = {"all sample": [1] * B, "all expect": [0] * B, "mixed": [1, 0, 1, 1, 0]}


@pytest.mark.parametrize("h", SAMPLING.values(), ids=SAMPLING.keys())
def test_hard_attention_gradients_are_capgens_under_capgen_scaling(h, monkeypatch):
    toy = make_toy(h)
    capgen = capgen_grads(toy, "hard")
    ours = our_grads(toy, "xu2015-hard", ["loss.capgen_scaling=true"], monkeypatch)
    # the REINFORCE term is not idle: the toy's advantages take both signs
    advantage = toy.baseline_time - capgen_forward(toy, toy.u, toy.e)["masked_cost"].mean(0)
    assert (advantage > 0).any() and (advantage < 0).any()
    scale = ours[2]
    np.testing.assert_allclose(scale * ours[0], capgen[0], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(scale * ours[1], capgen[1], rtol=1e-5, atol=1e-8)
    # the baseline moves as capgen's: baseline_time * 0.9 + 0.1 * masked_cost.mean()
    new_baseline = 0.9 * toy.baseline_time + 0.1 * capgen_forward(toy, toy.u, toy.e)["masked_cost"].mean()
    np.testing.assert_allclose(-float(ours[3].reward_baseline), new_baseline, rtol=1e-6)


def test_hard_attention_test_fails_on_any_other_weight_or_sign(monkeypatch):
    toy = make_toy(SAMPLING["mixed"])
    capgen = capgen_grads(toy, "hard")
    assert _agree(our_grads(toy, "xu2015-hard", ["loss.capgen_scaling=true"], monkeypatch), capgen)
    for wrong in (["loss.reinforce=0.11"], ["loss.reinforce=-0.1"], ["loss.entropy=0.0022"], ["loss.entropy=0"]):
        assert not _agree(our_grads(toy, "xu2015-hard", ["loss.capgen_scaling=true", *wrong], monkeypatch), capgen), \
            wrong


def test_per_caption_default_weighs_reinforce_and_entropy_b_times_less_than_capgen(monkeypatch):
    """The default (every preset but paper*): lambda_r, lambda_e per caption. capgen's weights are B times ours."""
    toy = make_toy(SAMPLING["mixed"])
    capgen = capgen_grads(toy, "hard")
    assert not _agree(our_grads(toy, "xu2015-hard", [], monkeypatch), capgen)
    assert _agree(our_grads(toy, "xu2015-hard", [f"loss.reinforce={0.1 * B}", f"loss.entropy={0.002 * B}"],
                            monkeypatch), capgen)


def test_soft_attention_gradients_and_cost_are_capgens_under_capgen_scaling(monkeypatch):
    toy = make_toy([0] * B)  # deterministic attention: alpha_sample = alpha
    capgen = capgen_grads(toy, "soft")
    ours = our_grads(toy, "xu2015", ["loss.capgen_scaling=true"], monkeypatch)
    np.testing.assert_allclose(ours[2] * ours[0], capgen[0], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(ours[2] * ours[1], capgen[1], rtol=1e-5, atol=1e-8)
    # the doubly stochastic term moves the gradient: without it, no agreement
    assert not _agree(our_grads(toy, "xu2015", ["loss.capgen_scaling=true", "loss.doubly_stochastic=0"],
                                monkeypatch), capgen)
    assert not _agree(our_grads(toy, "xu2015", ["loss.capgen_scaling=true", "loss.doubly_stochastic=1.1"],
                                monkeypatch), capgen)


def test_per_caption_default_weighs_eq14_l_over_b_times_more_than_capgen(monkeypatch):
    """capgen's lambda per caption is alpha_c * B / L (0.33 at B = 64, L = 196); ours, by default, lambda."""
    toy = make_toy([0] * B)
    capgen = capgen_grads(toy, "soft")
    assert not _agree(our_grads(toy, "xu2015", [], monkeypatch), capgen)
    assert _agree(our_grads(toy, "xu2015", [f"loss.doubly_stochastic={B / L}"], monkeypatch), capgen)


# -- dropout sites and the deep output's tanh (item 3), and which presets switch what ----------------------------


def _captioner(overrides: list[str]):
    repro = registry.get("xu2015")
    cfg = repro.load_config("tiny", ["model.dropout=0.5", *overrides])
    return cfg, repro.build(cfg, 40)


def _lstm_word_inputs(model, captions_in: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = model.lstm.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    torch.manual_seed(0)
    model.train()(torch.rand(2, 49, 1280), captions_in)
    handle.remove()
    return torch.stack(seen, 1)[..., :model.embed.embedding_dim]  # (B, T, m): the word part of the input


def test_embedding_dropout_off_feeds_the_embeddings_undropped():
    captions_in = torch.tensor([[BOS_ID, 5, 6, 7], [BOS_ID, 8, 9, 10]])
    _, model = _captioner(["model.embedding_dropout=false"])
    torch.testing.assert_close(_lstm_word_inputs(model, captions_in), model.embed(captions_in))
    _, model = _captioner([])  # the default drops them
    dropped = _lstm_word_inputs(model, captions_in)
    assert not torch.allclose(dropped, model.embed(captions_in))
    assert ((dropped == 0) | torch.isclose(dropped, 2 * model.embed(captions_in))).all()


def test_output_tanh_is_applied_between_the_deep_output_sum_and_l_o():
    _, model = _captioner(["model.output_tanh=false"])
    model.eval()
    seen = []
    model.L_o.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    features, captions_in = torch.rand(2, 49, 1280), torch.tensor([[BOS_ID, 5, 6], [BOS_ID, 8, 9]])
    plain_logits, _ = model(features, captions_in)
    model.output_tanh = True
    logits, _ = model(features, captions_in)
    torch.testing.assert_close(seen[1], torch.tanh(seen[0]))
    torch.testing.assert_close(logits, model.L_o(torch.tanh(seen[0])))
    assert not torch.allclose(logits, plain_logits)


CAPTIONING = [r.name for r in registry.REPRODUCTIONS.values() if r.task == "captioning"]


@pytest.mark.parametrize("name", CAPTIONING)
def test_only_the_paper_presets_switch_to_capgens_weights_and_dropout_sites(name):
    repro = registry.get(name)
    for preset in repro.presets():
        cfg = repro.load_config(preset)
        paper = preset.startswith("paper")
        assert cfg.loss.capgen_scaling is paper, preset
        assert cfg.model.embedding_dropout is not paper, preset
        assert cfg.model.output_tanh is paper, preset
