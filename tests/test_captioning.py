"""Show, Attend and Tell and Show and Tell: attention maths (Xu et al. Eqs. 8-14), the frozen encoder,
the feature cache, the caption datasets and one Lightning step on real Flickr8k images."""

import gzip
import json
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reproductions import registry
from reproductions.common import encoders
from reproductions.common.caption_module import CaptionModule, reinforce_loss, update_baseline
from reproductions.common.captioner import doubly_stochastic_penalty
from reproductions.common.data.captions import load_captions, load_karpathy
from reproductions.common.data.sources import DataError
from reproductions.common.data.vocab import BOS_ID, PAD_ID

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
        module = CaptionModule(type(model)(cfg.model, VOCAB, D, L), cfg, "xu2015", vocab=None).eval()
        losses[lam] = module._loss(batch)
        _, extras = module.model(batch["features"], batch["captions_in"])
        penalty = doubly_stochastic_penalty(extras["alpha"], batch["captions_out"] != PAD_ID).sum()
    torch.testing.assert_close(losses[2.0][0] - losses[0.0][0], 2.0 * penalty)
    torch.testing.assert_close(losses[2.0][1], losses[0.0][1])  # the likelihood is untouched


def test_hard_attention_samples_only_locations_with_weight():
    _, model = _model("xu2015-hard", ["loss.expected_prob=0.0"])
    model.train()
    allowed = 10  # alpha is uniform over the first 10 locations and exactly 0 elsewhere

    def fake_attention(query, keys, values, mask, projected_keys=None):
        alpha = torch.zeros(keys.shape[:2])
        alpha[:, :allowed] = 1.0 / allowed
        return torch.bmm(alpha.unsqueeze(1), values).squeeze(1), alpha

    model.attention.forward = fake_attention
    batch = _batch(batch=8, length=6)
    _, extras = model(batch["features"], batch["captions_in"])
    assert extras["location"].shape == (8, 6)
    assert ((extras["location"] >= 0) & (extras["location"] < allowed)).all()
    assert extras["sampled"].all()  # expected_prob = 0: every step samples
    torch.testing.assert_close(extras["log_p_s"], torch.full((8, 6), math.log(1 / allowed)))
    torch.testing.assert_close(extras["entropy"], torch.full((8, 6), math.log(allowed)))
    model.expected_prob = 1.0
    _, extras = model(batch["features"], batch["captions_in"])
    assert not extras["sampled"].any()  # expected_prob = 1: the expectation alpha everywhere


def test_reinforce_has_the_sign_and_baseline_of_section_4_1():
    theta = torch.tensor([0.3, -0.2, 0.1, 0.0], requires_grad=True)
    location = 2

    def grad(log_lik: float, baseline: float, entropy_weight: float = 0.0) -> torch.Tensor:
        theta.grad = None
        alpha = torch.softmax(theta, 0)
        log_p_s = torch.log(alpha[location]).unsqueeze(0)
        entropy = -(alpha * alpha.log()).sum().unsqueeze(0)
        loss = reinforce_loss(torch.tensor([log_lik]), log_p_s, entropy, torch.tensor(baseline), 1.0, entropy_weight)
        if entropy_weight == 0:
            torch.testing.assert_close(loss, -(log_lik - baseline) * log_p_s.sum())
        loss.backward()
        return theta.grad.clone()

    better = grad(log_lik=-1.0, baseline=-3.0)  # the sample explains the caption better than the baseline
    assert better[location] < 0 and all(better[i] > 0 for i in range(4) if i != location)  # descent raises it
    worse = grad(log_lik=-4.0, baseline=-3.0)
    assert worse[location] > 0
    assert grad(log_lik=-3.0, baseline=-3.0).abs().max() == 0  # at the baseline: no push
    peaked = grad(log_lik=-3.0, baseline=-3.0, entropy_weight=1.0)
    assert peaked[0] > 0  # the entropy bonus flattens the most likely location
    log_lik = torch.tensor([-1.0, -2.0])
    torch.testing.assert_close(update_baseline(torch.tensor(-3.0), log_lik, 0.9, first=False), torch.tensor(-2.85))
    torch.testing.assert_close(update_baseline(torch.tensor(-3.0), log_lik, 0.9, first=True), torch.tensor(-1.5))


def test_hard_training_step_moves_the_baseline():
    cfg, model = _model("xu2015-hard")
    module = CaptionModule(model, cfg, "xu2015-hard", vocab=None).train()
    batch = _batch()
    loss, nll, words, parts = module._loss(batch)
    assert int(module.baseline_steps) == 1
    torch.testing.assert_close(module.reward_baseline, -(nll / 3).detach())  # first batch: the mean log p(y|s,a)
    assert math.isfinite(loss.item()) and "reward_baseline" in parts


def test_encoder_puts_a_flickr8k_dog_in_imagenet_dog_classes(flickr8k):
    captions: dict[str, list[str]] = {}
    with gzip.open(flickr8k / "Flickr8k_text" / "Flickr8k.token.txt.gz", "rt") as fh:
        for line in fh:
            key, text = line.rstrip("\n").split("\t")
            captions.setdefault(key.split("#")[0], []).append(text.lower())
    dogs = sorted(k for k, caps in captions.items() if all(" dog " in f" {c} " for c in caps))[:3]
    assert len(dogs) == 3
    rng = torch.get_rng_state()
    encoder = encoders.load_encoder("efficientnet-lite0")
    assert torch.equal(rng, torch.get_rng_state())  # building it must not move the global RNG (resumption)
    pixels = torch.stack([encoders.read_image(flickr8k / "Images" / name) for name in dogs])
    with torch.no_grad():
        top5 = encoder.classify(pixels).topk(5, dim=-1).indices
        maps = encoder(pixels)
    assert maps.shape == (3, D, 7, 7)
    for name, classes in zip(dogs, top5.tolist()):  # ImageNet-1k classes 151-268 are dog breeds
        assert any(151 <= c <= 268 for c in classes), (name, classes)
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

    from reproductions.common.caption_module import CaptionDataModule

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
