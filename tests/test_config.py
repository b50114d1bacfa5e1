import typing

import pytest

from reproductions import registry
from reproductions.common.config import ConfigError, load_config
from reproductions.translation.rnn import RNNTranslationConfig


def test_preset_and_overrides_are_typed():
    cfg = registry.get("bahdanau2014").load_config("tiny", ["model.hidden=32", "optim.lr=1", "data.pair=fr-en"])
    assert cfg.model.hidden == 32
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.data.pair == "fr-en"


@pytest.mark.parametrize("text, value", [("1e-6", 1e-6), ("2.5E-3", 2.5e-3), ("1e4", 1e4), ("0.5", 0.5)])
def test_a_float_in_exponent_form_is_a_number(text, value):
    cfg = registry.get("bahdanau2014").load_config("tiny", [f"optim.eps={text}"])
    assert cfg.optim.eps == value and isinstance(cfg.optim.eps, float)


def test_unknown_key_in_override_is_named():
    with pytest.raises(ConfigError, match=r"--set model\.hiden=3: unknown config key 'model\.hiden'"):
        registry.get("bahdanau2014").load_config("tiny", ["model.hiden=3"])


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  hidden: 8\ntrian:\n  max_epochs: 1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown config key 'trian'"):
        load_config(RNNTranslationConfig, path)


@pytest.mark.parametrize("override, message", [
    ("model.hidden=big", "'model.hidden' must be int"),
    ("optim.name=sgd", "'optim.name' must be one of"),
    ("data.test_splits=val", "'data.test_splits' must be a list"),
    ("model=3", "'model' is a section"),
    ("nonsense", "must look like key=value"),
])
def test_bad_values_are_explained(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        registry.get("cho2014").load_config("tiny", [override])


def test_unknown_preset_and_name():
    with pytest.raises(registry.UnknownNameError, match="no preset 'huge'"):
        registry.get("cho2014").config_path("huge")
    with pytest.raises(registry.UnknownNameError, match="Did you mean 'bahdanau2014'"):
        registry.get("bahdanau2041")
    assert registry.get("rnnsearch").name == "bahdanau2014"


def test_a_precision_typo_is_caught_before_any_work():
    from reproductions.common.precision import PRECISIONS
    from reproductions.common.sections import TrainConfig

    assert set(typing.get_args(typing.get_type_hints(TrainConfig)["precision"])) == set(PRECISIONS)
    with pytest.raises(ConfigError, match="train.precision.*must be one of"):
        registry.get("cho2014").load_config("tiny", ["train.precision=bf16_mixed"])
