"""Every translation reproduction, every shipped config: loads, builds, runs forward and backward with a
finite loss, and (tiny preset) takes one Lightning step. Captioning: tests/test_captioning.py."""

import math

import pytest
import torch
import torch.nn.functional as F

from reproductions import registry
from reproductions.common.data.vocab import EOS_ID, PAD_ID

TRANSLATION = [r.name for r in registry.REPRODUCTIONS.values() if r.task == "translation"]
ALL_CONFIGS = [(name, p) for name in TRANSLATION for p in registry.get(name).presets()]
VOCAB = 40  # stands in for the data-derived vocabulary size; the rest of each config is used as shipped


def _toy_batch(batch=3, src_len=6, tgt_len=5, vocab=VOCAB):
    torch.manual_seed(0)
    src = torch.randint(4, vocab, (batch, src_len))
    src[1, 4:] = PAD_ID  # a shorter sentence
    src[:, -1] = torch.where(src[:, -1] == PAD_ID, PAD_ID, EOS_ID)
    tgt_out = torch.randint(4, vocab, (batch, tgt_len))
    tgt_in = torch.cat([torch.full((batch, 1), 2), tgt_out[:, :-1]], dim=1)
    return src, tgt_in, tgt_out


def test_every_reproduction_has_the_four_presets_and_a_readme():
    for repro in registry.REPRODUCTIONS.values():
        assert {"tiny", "quick", "cpu", "paper"} <= set(repro.presets()), repro.name
        assert (repro.folder / "README.md").is_file(), repro.name


def test_papers_name_registered_baselines():
    for paper in registry.papers():
        assert registry.get(paper.baseline).role == "baseline"


@pytest.mark.parametrize("name, preset", ALL_CONFIGS)
def test_config_builds_and_trains_one_step(name, preset):
    repro = registry.get(name)
    cfg = repro.load_config(preset)
    model = repro.build(cfg, VOCAB, VOCAB)
    src, tgt_in, tgt_out = _toy_batch()
    logits, _ = model(src, tgt_in)
    assert logits.shape == (*tgt_in.shape, VOCAB)
    loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten())
    assert math.isfinite(loss.item())
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", TRANSLATION)
def test_incremental_decoding_matches_teacher_forcing(name):
    repro = registry.get(name)
    cfg = repro.load_config("tiny")
    model = repro.build(cfg, VOCAB, VOCAB).eval()
    src, tgt_in, _ = _toy_batch()
    with torch.no_grad():
        logits, _ = model(src, tgt_in)
        state = model.start(src)
        for t in range(tgt_in.size(1)):
            log_probs, state, _ = model.step(state, tgt_in[:, t])
            torch.testing.assert_close(log_probs, torch.log_softmax(logits[:, t], -1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", TRANSLATION)
def test_one_lightning_step_on_real_data(name, data_root, tmp_path):
    import pytorch_lightning as pl

    from reproductions.translation.data.datamodule import TranslationDataModule
    from reproductions.translation.module import TranslationModule

    repro = registry.get(name)
    cfg = repro.load_config("tiny", ["data.train_limit=64", "data.eval_limit=8"])
    data = TranslationDataModule(cfg.data, seed=0, cache_dir=tmp_path)
    data.load()
    module = TranslationModule(repro.build(cfg, len(data.src_vocab), len(data.tgt_vocab)), cfg, name,
                               data.src_vocab, data.tgt_vocab)
    before = [p.detach().clone() for p in module.parameters()]
    trainer = pl.Trainer(fast_dev_run=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         use_distributed_sampler=False, accelerator="cpu")
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))
    assert module.tokens_seen > 0


def test_training_batches_are_reshuffled_every_epoch(data_root, tmp_path):
    import pytorch_lightning as pl

    from reproductions.translation.data.datamodule import TranslationDataModule
    from reproductions.translation.module import TranslationModule

    class RecordBatches(pl.Callback):
        def __init__(self):
            self.seen: dict[int, list] = {}

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.seen.setdefault(trainer.current_epoch, []).append(batch["index"].tolist())

    repro = registry.get("cho2014")
    cfg = repro.load_config("tiny", ["data.train_limit=120", "data.eval_limit=8", "data.max_tokens=300"])
    data = TranslationDataModule(cfg.data, seed=0, cache_dir=tmp_path)
    data.load()
    module = TranslationModule(repro.build(cfg, len(data.src_vocab), len(data.tgt_vocab)), cfg, "cho2014",
                               data.src_vocab, data.tgt_vocab)
    recorder = RecordBatches()
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, use_distributed_sampler=False, accelerator="cpu",
                         callbacks=[recorder], num_sanity_val_steps=0)
    trainer.fit(module, datamodule=data)
    first, second = recorder.seen[0], recorder.seen[1]
    assert len(first) == len(second) and first != second
    assert sorted(i for b in first for i in b) == sorted(i for b in second for i in b)
