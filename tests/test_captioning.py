"""Show, Attend and Tell and Show and Tell: attention maths (Xu et al. Eqs. 8-14), the frozen encoder,
the feature cache, the caption datasets and one Lightning step on real Flickr8k images."""

import gzip
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reproductions import registry
from reproductions.captioning import encoders
from reproductions.captioning.config import CaptionLossConfig
from reproductions.captioning.data.captions import load_captions, load_karpathy
from reproductions.captioning.module import CaptionModule
from reproductions.common.data.sources import DataError
from reproductions.common.data.vocab import BOS_ID, PAD_ID
from reproductions.xu2015.model import HardAttention, doubly_stochastic_penalty, reinforce_loss

CAPTIONING = [r.name for r in registry.REPRODUCTIONS.values() if r.task == "captioning"]
VOCAB, L, D = 40, 49, 1280


@pytest.fixture(scope="session")
def flickr8k(data_root):
    if not (data_root / "flickr8k" / "Images").is_dir():
        pytest.skip("Flickr8k images not under the data root")
    return data_root / "flickr8k"


def _model(name: str, overrides=()):
    repro = registry.get(name)
    cfg = repro.load_config("tiny", list(overrides))
    return cfg, repro.build(cfg, VOCAB)


def _batch(batch=3, length=5):
    torch.manual_seed(0)
    features = torch.randn(batch, L, D).abs()
    out = torch.randint(4, VOCAB, (batch, length))
    out[1, 3:] = PAD_ID  # a shorter caption
    captions_in = torch.cat([torch.full((batch, 1), BOS_ID), out[:, :-1]], dim=1)
    captions_in[1, 4:] = PAD_ID
    return {"features": features, "captions_in": captions_in, "captions_out": out}


def test_registry_names_and_aliases():
    assert registry.get("xu2016").name == "xu2015"
    assert registry.get("xu2016-hard").name == "xu2015-hard"
    assert registry.get("xu2015").baseline == registry.get("xu2015-hard").baseline == "vinyals2015"
    assert registry.get("xu2015-hard").folder == registry.get("xu2015").folder
    assert registry.get("xu2015-hard").load_config("tiny").model.context == "hard"
    with pytest.raises(ValueError, match="model.context must be soft or hard"):
        _model("xu2015", ["model.context=fixed"])


CAPTION_CONFIGS = [(name, preset) for name in CAPTIONING for preset in registry.get(name).presets()]


@pytest.mark.parametrize("name, preset", CAPTION_CONFIGS)
def test_every_caption_config_builds_and_trains(name, preset):
    repro = registry.get(name)
    cfg = repro.load_config(preset)
    model = repro.build(cfg, VOCAB).train()
    dim = encoders.spec(cfg.data.encoder).dim
    batch = _batch()
    logits, extras = model(batch["features"][..., :dim], batch["captions_in"])
    assert logits.shape == (3, 5, VOCAB)
    assert ("alpha" in extras) == (cfg.model.context != "fixed")
    loss = F.cross_entropy(logits.transpose(1, 2), batch["captions_out"], ignore_index=PAD_ID)
    assert math.isfinite(loss.item())
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", CAPTIONING)
def test_incremental_decoding_matches_teacher_forcing(name):
    _, model = _model(name)
    model.eval()
    batch = _batch()
    with torch.no_grad():
        logits, extras = model(batch["features"], batch["captions_in"])
        state = model.start(batch["features"])
        for t in range(batch["captions_in"].size(1)):
            log_probs, state, alpha = model.step(state, batch["captions_in"][:, t])
            torch.testing.assert_close(log_probs, torch.log_softmax(logits[:, t], -1), atol=1e-5, rtol=1e-5)
            if alpha is not None:
                torch.testing.assert_close(alpha, extras["alpha"][:, t])


def test_soft_attention_weights_sum_to_one_at_every_step():
    _, model = _model("xu2015")
    batch = _batch()
    _, extras = model.train()(batch["features"], batch["captions_in"])
    alpha = extras["alpha"]
    assert alpha.shape == (3, 5, L) and (alpha >= 0).all()
    torch.testing.assert_close(alpha.sum(-1), torch.ones(3, 5))


def test_doubly_stochastic_penalty_is_eq14_on_hand_made_values():
    alphas = torch.tensor([
        [[0.9, 0.1], [0.6, 0.4], [0.5, 0.5]],  # third step is padding
        [[0.2, 0.8], [0.2, 0.8], [0.2, 0.8]],
    ])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    # caption 0: sum_t alpha = (1.5, 0.5) -> (1-1.5)^2 + (1-0.5)^2 = 0.5
    # caption 1: sum_t alpha = (0.6, 2.4) -> 0.16 + 1.96 = 2.12
    torch.testing.assert_close(doubly_stochastic_penalty(alphas, mask), torch.tensor([0.5, 2.12]))


def test_soft_loss_adds_lambda_times_the_penalty():
    batch = _batch()
    losses = {}
    for lam in (0.0, 2.0):
        cfg, model = _model("xu2015", [f"loss.doubly_stochastic={lam}"])
        torch.manual_seed(1)
        module = CaptionModule(registry.get("xu2015").build(cfg, VOCAB), cfg, "xu2015", vocab=None).eval()
        losses[lam] = module._loss(batch)
        _, extras = module.model(batch["features"], batch["captions_in"])
        penalty = doubly_stochastic_penalty(extras["alpha"], batch["captions_out"] != PAD_ID).sum()
    torch.testing.assert_close(losses[2.0][0] - losses[0.0][0], 2.0 * penalty)
    torch.testing.assert_close(losses[2.0][1], losses[0.0][1])  # the likelihood is untouched


def test_hard_attention_samples_only_locations_with_weight():
    _, model = _model("xu2015-hard", ["loss.expected_prob=0.0"])
    model.train()
    allowed = 10  # alpha is uniform over the first 10 locations and exactly 0 elsewhere

    def fake_scores(query, projected_keys):  # e_ti: equal on the first 10 locations, -inf (alpha 0) elsewhere
        e = torch.zeros(projected_keys.shape[:2])
        e[:, allowed:] = float("-inf")
        return e

    model.context.attention.score = fake_scores
    batch = _batch(batch=8, length=6)
    _, extras = model(batch["features"], batch["captions_in"])
    assert extras["location"].shape == (8, 6)
    assert ((extras["location"] >= 0) & (extras["location"] < allowed)).all()
    assert extras["sampled"].all()  # expected_prob = 0: every step samples
    torch.testing.assert_close(extras["log_p_s"], torch.full((8, 6), math.log(1 / allowed)))
    torch.testing.assert_close(extras["entropy"], torch.full((8, 6), math.log(allowed)))
    model.context.expected_prob = 1.0
    _, extras = model(batch["features"], batch["captions_in"])
    assert not extras["sampled"].any()  # expected_prob = 1: the expectation alpha everywhere


def test_the_expected_value_rule_draws_once_per_caption():
    """§4.1: with probability 0.5 *for a given image* the sampled location is replaced by its expectation:
    one Bernoulli per caption, shared by all its steps (not one per step)."""
    cfg, model = _model("xu2015-hard")
    assert cfg.loss.expected_prob == 0.5
    model.train()
    torch.manual_seed(3)
    batch = _batch(batch=400, length=7)
    contexts = []
    original = model.context.forward
    model.context.forward = lambda state, h, sample: contexts.append(original(state, h, sample)) or contexts[-1]
    _, extras = model(batch["features"], batch["captions_in"])
    sampled = extras["sampled"]  # (B, T)
    assert (sampled == sampled[:, :1]).all()  # constant over a caption's steps
    assert 0.4 < sampled[:, 0].float().mean() < 0.6  # ... and about half of the captions sample
    feats = batch["features"]
    for z, alpha, extra in contexts:  # a caption that does not sample gets exactly the expectation at every step
        expected = torch.bmm(alpha.unsqueeze(1), feats).squeeze(1)
        picked = feats[torch.arange(feats.size(0)), extra["location"]]
        use = extra["sampled"]
        torch.testing.assert_close(z[~use], expected[~use])
        torch.testing.assert_close(z[use], picked[use])


def test_reinforce_has_the_sign_of_eq12_and_the_authors_per_word_scale():
    theta = torch.tensor([0.3, -0.2, 0.1, 0.0], requires_grad=True)
    location = 2

    def grad(reward: float, baseline: float, entropy_weight: float = 0.0) -> torch.Tensor:
        theta.grad = None
        alpha = torch.softmax(theta, 0)
        log_p_s = torch.log(alpha[location]).unsqueeze(0)
        entropy = -(alpha * alpha.log()).sum().unsqueeze(0)
        loss = reinforce_loss(torch.tensor([reward]), log_p_s, entropy, torch.tensor(baseline), 0.1, entropy_weight)
        if entropy_weight == 0:
            torch.testing.assert_close(loss, -0.1 * (reward - baseline) * log_p_s.sum())
        loss.backward()
        return theta.grad.clone()

    better = grad(reward=-1.0, baseline=-3.0)  # the sample explains the caption better than the baseline
    assert better[location] < 0 and all(better[i] > 0 for i in range(4) if i != location)  # descent raises it
    worse = grad(reward=-4.0, baseline=-3.0)
    assert worse[location] > 0
    assert grad(reward=-3.0, baseline=-3.0).abs().max() == 0  # at the baseline: no push
    peaked = grad(reward=-3.0, baseline=-3.0, entropy_weight=1.0)
    assert peaked[0] > 0  # the entropy bonus flattens the most likely location


def test_hard_attention_loss_on_hand_made_values():
    """Per-word reward and baseline, lambda_r = 1/10 and lambda_e = 0.002 (capgen.py), b moved by 0.9/0.1."""
    cfg = CaptionLossConfig()
    assert (cfg.reinforce, cfg.entropy, cfg.baseline_decay) == (0.1, 0.002, 0.9)
    block = HardAttention(registry.get("xu2015-hard").load_config("tiny").model, feature_dim=4)
    block.reward_baseline.fill_(-2.2)
    block.baseline_steps.fill_(7)
    step_mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    nll = torch.tensor([6.0, 12.0])  # per word: 2.0 (3 words) and 3.0 (4 words): rewards -2.0 and -3.0
    extras = {
        "sampled": torch.tensor([[True] * 4, [False] * 4]),  # caption 1 used the expectation: no REINFORCE
        "log_p_s": torch.tensor([[-1.0, -0.5, -2.0, -9.0], [-1.0, -1.0, -1.0, -1.0]]),  # -9: padding, ignored
        "entropy": torch.tensor([[1.0, 1.0, 0.5, 7.0], [0.2, 0.2, 0.2, 0.2]]),
    }
    loss, parts = block.loss(extras, step_mask, nll, cfg)
    # caption 0: -(0.1 * (-2.0 - -2.2) * (-1 - 0.5 - 2) + 0.002 * 2.5);  caption 1: -(0 + 0.002 * 0.8)
    expected = -(0.1 * 0.2 * -3.5 + 0.002 * 2.5) - 0.002 * 0.8
    torch.testing.assert_close(loss, torch.tensor(expected))
    torch.testing.assert_close(block.reward_baseline, torch.tensor(0.9 * -2.2 + 0.1 * -2.5))  # batch mean: -2.5
    torch.testing.assert_close(parts["attention_entropy"], torch.tensor(3.3 / 7))
    assert int(block.baseline_steps) == 8


def test_hard_training_step_moves_the_baseline():
    cfg, model = _model("xu2015-hard")
    module = CaptionModule(model, cfg, "xu2015-hard", vocab=None).train()
    batch = _batch()
    loss, nll, words, parts = module._loss(batch)
    block = module.model.context
    assert int(block.baseline_steps) == 1
    assert math.isfinite(loss.item()) and "reward_baseline" in parts
    torch.testing.assert_close(parts["reward_baseline"], block.reward_baseline)
    assert -20 < float(block.reward_baseline) < 0  # first batch: the mean per-word log p(y|s,a), about -log(V)


@pytest.mark.parametrize("name, grid", [("efficientnet-lite0", 7), ("efficientnet-lite2", 9)])
def test_encoder_puts_a_flickr8k_dog_in_imagenet_dog_classes(name, grid, flickr8k):
    """The pretrained weights are really loaded: a dog photo's top 5 ImageNet classes hold a dog breed, and the
    feature grid is the documented one at the encoder's input size (224 px for Lite0, 260 for Lite2)."""
    captions: dict[str, list[str]] = {}
    with gzip.open(flickr8k / "Flickr8k_text" / "Flickr8k.token.txt.gz", "rt") as fh:
        for line in fh:
            key, text = line.rstrip("\n").split("\t")
            captions.setdefault(key.split("#")[0], []).append(text.lower())
    dogs = sorted(k for k, caps in captions.items() if all(" dog " in f" {c} " for c in caps))[:3]
    assert len(dogs) == 3
    rng = torch.get_rng_state()
    encoder = encoders.load_encoder(name)
    assert torch.equal(rng, torch.get_rng_state())  # building it must not move the global RNG (resumption)
    s = encoders.spec(name)
    pixels = torch.stack([encoders.read_image(flickr8k / "Images" / dog, s.size) for dog in dogs])
    with torch.no_grad():
        top5 = encoder.classify(pixels).topk(5, dim=-1).indices
        maps = encoder(pixels)
    assert maps.shape == (3, D, grid, grid) == (3, s.dim, s.grid, s.grid)
    for dog, classes in zip(dogs, top5.tolist()):  # ImageNet-1k classes 151-268 are dog breeds
        assert any(151 <= c <= 268 for c in classes), (dog, classes)
    assert not any(p.requires_grad for p in encoder.parameters())


def test_feature_cache_hits_invalidates_and_repairs(flickr8k, tmp_path, monkeypatch):
    names = sorted(p.name for p in (flickr8k / "Images").glob("10*.jpg"))[:3]
    folder = tmp_path / "images"
    folder.mkdir()
    for name in names:
        shutil.copy(flickr8k / "Images" / name, folder / name)
    paths = [folder / n for n in names]
    calls = []
    real = encoders.compute_features
    monkeypatch.setattr(encoders, "compute_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    cache, messages = tmp_path / "cache", []

    first = encoders.cached_features("efficientnet-lite0", names, paths, cache, log=messages.append)
    second = encoders.cached_features("efficientnet-lite0", names, paths, cache, log=messages.append)
    assert len(calls) == 1 and first.key == second.key
    assert np.array_equal(first.features, second.features) and first.features.shape == (3, L, D)
    assert np.array_equal(second[second.rows([names[1]])], first[first.rows([names[1]])])

    shutil.copy(flickr8k / "Images" / names[0], folder / names[1])  # an image changed: the old entry is stale
    changed = encoders.cached_features("efficientnet-lite0", names, paths, cache, log=messages.append)
    assert len(calls) == 2 and changed.key != first.key
    assert np.array_equal(changed[changed.rows([names[1]])], changed[changed.rows([names[0]])])

    array = cache / "features" / f"efficientnet-lite0-{changed.key}.npy"
    array.write_bytes(array.read_bytes()[:1000])  # a truncated cache file
    repaired = encoders.cached_features("efficientnet-lite0", names, paths, cache, log=messages.append)
    assert len(calls) == 3 and any("damaged" in m for m in messages)
    assert np.array_equal(repaired.features, changed.features)


def test_flickr8k_splits_and_karpathy_json(flickr8k, tmp_path):
    cfg = registry.get("xu2015").load_config("tiny").data
    test = load_captions(cfg, "test")
    assert len(test) == cfg.eval_limit and all(len(c) == 5 for c in test.captions)
    full = load_captions(registry.get("xu2015").load_config("tiny", ["data.eval_limit=null"]).data, "dev")
    assert len(full) == 1000

    names = test.images[:4]
    karpathy = {"dataset": "flickr8k", "images": [
        {"filename": n, "split": s, "sentences": [{"raw": c, "tokens": c.split()} for c in caps]}
        for n, s, caps in zip(names, ["train", "restval", "val", "test"], test.captions)
    ]}
    path = tmp_path / "dataset_flickr8k.json"
    path.write_text(json.dumps(karpathy))
    train = load_karpathy(str(path), "train", str(flickr8k / "Images"))
    assert train.images == names[:2] and train.captions[0] == test.captions[0]  # restval joins train
    assert load_karpathy(str(path), "test", str(flickr8k / "Images")).images == [names[3]]
    with pytest.raises(DataError, match="missing"):
        load_karpathy(str(path), "train", str(tmp_path))
    missing = tmp_path / "nowhere.json"
    with pytest.raises(DataError, match="nowhere.json does not exist"):
        load_karpathy(str(missing), "train", None)
    path.write_text('{"pictures": []}')
    with pytest.raises(DataError, match="dataset_flickr8k.json is not a Karpathy split file"):
        load_karpathy(str(path), "train", str(flickr8k / "Images"))


@pytest.mark.parametrize("name", CAPTIONING)
def test_one_lightning_step_on_real_flickr8k(name, flickr8k, tmp_path):
    import pytorch_lightning as pl

    from reproductions.captioning.data.datamodule import CaptionDataModule

    repro = registry.get(name)
    cfg = repro.load_config("tiny")
    data = CaptionDataModule(cfg, seed=0, cache_dir=tmp_path)
    data.load()
    assert len(data.train_set) == 5 * cfg.data.train_limit
    module = CaptionModule(repro.build(cfg, len(data.vocab)), cfg, name, data.vocab)
    before = [p.detach().clone() for p in module.parameters()]
    trainer = pl.Trainer(fast_dev_run=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu")
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 1 and module.tokens_seen > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))
    assert 0 <= float(trainer.callback_metrics["val/bleu4"]) <= 100  # the metric best.ckpt is chosen on (§5.2)


def test_caption_words_are_split_on_whitespace_only(tmp_path):
    from reproductions.captioning.data.datamodule import build_caption_vocab

    captions = ["A dog runs through the snow .", "a dog 's ball , red .", "A dog ."]
    vocab = build_caption_vocab(captions, 1, 100, tmp_path)
    assert vocab.tokens("A dog 's ball .") == ["a", "dog", "'s", "ball", "."]  # no lone Metaspace marker
    assert len(vocab.encode("a dog runs .")) == 4
    assert vocab.decode(vocab.encode("A dog runs through the snow .")) == "a dog runs through the snow ."


def test_selection_and_early_stopping_on_validation_bleu():
    from pytorch_lightning.callbacks import EarlyStopping

    cfg, model = _model("xu2015", ["train.early_stopping_patience=3"])
    module = CaptionModule(model, cfg, "xu2015", vocab=None)
    assert module.monitor == ("val/bleu4", "max")
    [stopper] = module.configure_callbacks()
    assert isinstance(stopper, EarlyStopping) and stopper.monitor == "val/bleu4" and stopper.patience == 3
    assert stopper.mode == "max"
    cfg, model = _model("xu2015", ["train.val_bleu=false"])
    module = CaptionModule(model, cfg, "xu2015", vocab=None)
    assert module.monitor == ("val/loss", "min") and module.configure_callbacks() == []
    assert registry.get("xu2015").load_config("paper").train.early_stopping_patience == 10


# -- the paper's encoders, without downloading their weights ---------------------------------------------------


def _torchvision_or_skip() -> None:
    """Skip without torchvision, except in `tox -e paper` (ATTNREPRO_REQUIRE_TORCHVISION=1), where these tests are
    the point and a missing or broken torchvision must fail."""
    if os.environ.get("ATTNREPRO_REQUIRE_TORCHVISION") == "1":
        import torchvision  # noqa: F401
    else:
        pytest.importorskip("torchvision", reason="torchvision is not installed (make test-paper runs these)")


@pytest.mark.parametrize("name, shape", [("vgg19", (512, 14, 14)), ("resnet101", (2048, 7, 7))])
def test_torchvision_encoders_give_the_documented_features(name, shape, flickr8k):
    """VGG-19 conv5_4 (Xu et al. §4.3: 14x14x512) and ResNet-101 layer4 (7x7x2048) on real Flickr8k images,
    with random weights (no download), through the batched extraction that training uses."""
    _torchvision_or_skip()
    paths = sorted((flickr8k / "Images").glob("10*.jpg"))[:2]
    rng = torch.get_rng_state()
    encoder = encoders.load_encoder(name, pretrained=False)
    assert torch.equal(rng, torch.get_rng_state())
    if name == "resnet101":  # random residual branches add up to ~1e4 over 33 blocks, beyond the cache's float16;
        from torchvision.models.resnet import Bottleneck  # trained ones do not: start them at zero, as
        for block in encoder.modules():  # torchvision's zero_init_residual does
            if isinstance(block, Bottleneck):
                torch.nn.init.zeros_(block.bn3.weight)
    with torch.no_grad():
        maps = encoder(torch.stack([encoders.read_image(p) for p in paths]))
    assert maps.shape == (2, *shape)
    s = encoders.spec(name)
    assert (s.dim, s.grid, s.grid) == shape
    features = encoders.compute_features(name, paths, batch_size=1, encoder=encoder)
    assert features.shape == (2, s.locations, s.dim) and features.dtype == np.float16
    np.testing.assert_allclose(features[1], maps[1].flatten(1).T.numpy(), rtol=1e-2, atol=1e-2)


@pytest.mark.slow
def test_paper_preset_trains_with_vgg19_weights_from_a_local_file(flickr8k, tmp_path):
    """The VGG-19 paper command,
    `attnrepro train xu2015 --preset paper --set data.encoder=vgg19 --set data.encoder_weights=PATH`, gets
    as far as training where torchvision and a weights file are present (here a randomly initialised
    VGG-19 saved as torchvision's state dict, on a few images: the paper's layer sizes, two optimiser steps)."""
    import subprocess
    import sys

    _torchvision_or_skip()
    import torchvision

    weights = tmp_path / "vgg19-random.pth"
    torch.save(torchvision.models.vgg19().state_dict(), weights)
    run_dir = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "disabled", "ATTNREPRO_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "train", "xu2015", "--preset", "paper", "--no-evaluate",
         "--run-dir", str(run_dir), "--set", "data.encoder=vgg19", "--set", f"data.encoder_weights={weights}",
         "--set", "data.train_limit=6", "--set", "data.eval_limit=2", "--set", "data.batch_size=8",
         "--set", "train.max_steps=2", "--set", "train.max_epochs=1"],
        capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").glob("*.ckpt"))
    cached = list((tmp_path / "cache" / "features").rglob("*"))
    assert cached, "the VGG-19 features were not extracted and cached"


@pytest.mark.slow
def test_paper_preset_benchmark_records_each_models_speed(flickr8k, tmp_path):
    """benchmarks/paper_preset.py (the GPU check of the paper preset): VGG-19 features, then each model trains at
    the paper's sizes and its words/s and seconds per epoch are recorded (random weights: speed and path only)."""
    import subprocess
    import sys

    _torchvision_or_skip()
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "paper_preset.py"
    out = tmp_path / "bench"
    env = {**os.environ, "WANDB_MODE": "disabled", "ATTNREPRO_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, str(script), "--random-weights", "--models", "xu2015", "xu2015-hard", "--out", str(out),
         "--set", "data.train_limit=6", "--set", "data.eval_limit=2", "--set", "data.batch_size=8",
         "--set", "train.max_steps=2", "--set", "train.max_epochs=1"],
        capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((out / "result.json").read_text())
    assert record["weights"].startswith("random") and record["features"]["encoder"] == "vgg19"
    assert record["tokens_per_epoch"] == sum(min(len(c.split()), 30) + 1 for caps in _first_captions(6) for c in caps)
    for name in ("xu2015", "xu2015-hard"):
        training = record["runs"][name]["training"]
        assert training["steps"] == 2 and training["parameters"] > 10_000_000  # the paper's sizes (LSTM 1800)
        assert record["runs"][name]["seconds_per_epoch"] > 0


def _first_captions(n: int) -> list[list[str]]:
    from reproductions.captioning.data.captions import load_flickr8k

    return load_flickr8k("train").limit(n).captions


def test_features_beyond_float16_are_one_clear_error(flickr8k):
    """Features are cached as float16: weights that give larger values (not ImageNet weights) stop with the
    cause, instead of caching infinities."""
    paths = sorted((flickr8k / "Images").glob("10*.jpg"))[:1]

    class Untrained(torch.nn.Module):
        def forward(self, images):
            return torch.full((images.size(0), 512, 14, 14), 1e5)

    with pytest.raises(encoders.EncoderError, match=r"vgg19 features reach \|x\| = 1e\+05, beyond float16"):
        encoders.compute_features("vgg19", paths, encoder=Untrained(), weights="w.pth")


def test_missing_encoder_weights_are_one_clear_error(tmp_path, monkeypatch):
    with pytest.raises(encoders.EncoderError, match="encoder_weights is for vgg19/resnet101"):
        encoders.require_encoder("efficientnet-lite0", str(tmp_path / "w.pth"))
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(encoders.EncoderError, match=r"torchvision: pip install '\.\[paper\]' in the checkout"):
            encoders.require_encoder("vgg19")
        return
    with pytest.raises(encoders.EncoderError, match="no such file"):
        encoders.require_encoder("vgg19", str(tmp_path / "w.pth"))
    import urllib.error

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(encoders.EncoderError, match=r"download https://download.pytorch.org/models/vgg19-\w+\.pth"):
        encoders.require_encoder("vgg19")


def test_feature_device_follows_the_training_device():
    assert encoders.feature_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert encoders.feature_device("cpu") == "cpu"


# -- learnability ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["xu2015", "xu2015-hard"])
def test_attention_captioner_learns_a_synthetic_image_to_caption_mapping(name):
    """Six synthetic 'images': noise at every location but one, which holds the image's own pattern; each
    image has its own three-word caption. Greedy decoding must reproduce all six within 300 CPU steps (both
    variants solve it in 25-50)."""
    from reproductions.captioning.config import CaptionDecodeConfig
    from reproductions.common.beam import beam_search

    torch.manual_seed(0)
    cfg = registry.get(name).load_config("tiny", ["model.embed_dim=32", "model.hidden_dim=64",
                                                  "model.attention_dim=32"])
    images, locations, vocab = 6, 4, 4 + 12
    patterns = 3.0 * torch.randn(images, D)
    features = 0.1 * torch.randn(images, locations, D)
    where = torch.randint(0, locations, (images,))
    features[torch.arange(images), where] += patterns
    captions = torch.tensor([[4 + i, 10 + i % 3, 4 + (i + 1) % images] for i in range(images)])
    batch = {"features": features,
             "captions_in": torch.cat([torch.full((images, 1), BOS_ID), captions], 1),
             "captions_out": torch.cat([captions, torch.full((images, 1), 3)], 1)}  # 3: </s>
    module = CaptionModule(registry.get(name).build(cfg, vocab), cfg, name, vocab=None)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.01)
    for step in range(1, 301):
        module.train()
        loss, _, words, _ = module._loss(batch)
        optimizer.zero_grad()
        (loss / words).backward()
        optimizer.step()
        if step % 10 == 0:
            module.eval()
            with torch.no_grad():
                hyps = beam_search(module.model, features, CaptionDecodeConfig(beam=1, max_len=5))
            if [h.tokens for h in hyps] == captions.tolist():
                break
    assert [h.tokens for h in hyps] == captions.tolist(), f"not learned in {step} steps"


def test_training_without_java_stops_before_any_work_unless_scoring_is_left_for_later(flickr8k, tmp_path,
                                                                                         monkeypatch):
    """pycocoevalcap scores the test splits after training: a missing Java is reported before training starts.
    `train --no-evaluate` (a GPU node without Java; `attnrepro evaluate` runs elsewhere later) does not need it."""
    from harness.train import train
    from reproductions.captioning import metrics as caption_metrics
    from reproductions.captioning.metrics import MetricError

    which = shutil.which
    monkeypatch.setattr(caption_metrics.shutil, "which", lambda cmd, *a, **k: None if cmd == "java" else which(cmd))
    cache = tmp_path / "cache"
    monkeypatch.setenv("ATTNREPRO_CACHE", str(cache))
    with pytest.raises(MetricError, match="needs Java"):
        train("xu2015", "tiny", run_dir=tmp_path / "scored", wandb="disabled")
    assert not cache.exists() and not (tmp_path / "scored" / "checkpoints").exists()  # nothing read or trained

    run = train("xu2015", "tiny", overrides=["train.max_steps=1"], run_dir=tmp_path / "later", wandb="disabled",
                evaluate_after=False)
    assert (run / "checkpoints" / "last.ckpt").is_file()


def test_checkpoints_from_before_the_context_blocks_still_load():
    for name in CAPTIONING:
        _, model = _model(name)
        old = {k.removeprefix("context."): v for k, v in model.state_dict().items()
               if k not in ("context.reward_baseline", "context.baseline_steps")}
        assert any(k.startswith("attention.") or k.startswith("image_embed.") for k in old)
        _, fresh = _model(name)
        fresh.load_state_dict(old)  # the old layout: context layers on the decoder, no baseline buffers
        for key, value in model.state_dict().items():
            torch.testing.assert_close(fresh.state_dict()[key], value)


def test_feature_extraction_leaves_the_global_rng_alone(flickr8k):
    """A run must do the same whether its features were cached or computed (seeds, exact resumption)."""

    class Zeros(torch.nn.Module):
        def forward(self, images):
            return images.new_zeros(images.size(0), D, 7, 7)

    paths = sorted((flickr8k / "Images").glob("10*.jpg"))[:3]
    torch.manual_seed(0)
    before = torch.get_rng_state()
    features = encoders.compute_features("efficientnet-lite0", paths, batch_size=2, encoder=Zeros())
    assert features.shape == (3, L, D)
    assert torch.equal(before, torch.get_rng_state())
