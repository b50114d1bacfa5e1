"""The config reference (docs/config.md, `attnrepro config --list`) lists every key of every config dataclass."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from harness import config_reference
from reproductions import registry

ROOT = Path(__file__).resolve().parent.parent


def _leaf_keys(cls, prefix: str = "") -> set[str]:
    """Every key of a config dataclass, walked independently of config_reference."""
    out = set()
    for f in dataclasses.fields(cls):
        factory = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if isinstance(factory, type) and dataclasses.is_dataclass(factory):
            out |= _leaf_keys(factory, f"{prefix}{f.name}.")
        else:
            out.add(prefix + f.name)
    return out


def test_every_key_of_every_registry_config_is_listed():
    for repro in registry.REPRODUCTIONS.values():
        cls = registry._resolve(repro.config_class)
        listed = {k.key for k in config_reference.keys(cls)}
        assert listed == _leaf_keys(cls), repro.name


def test_docs_config_md_is_up_to_date():
    assert (ROOT / "docs" / "config.md").read_text() == config_reference.markdown(), (
        "docs/config.md is out of date: python -m harness.config_reference > docs/config.md")


def test_the_reference_names_every_key_with_type_and_default():
    doc = (ROOT / "docs" / "config.md").read_text()
    for repro in registry.REPRODUCTIONS.values():
        for key in _leaf_keys(registry._resolve(repro.config_class)):
            assert f"| `{key}` | `" in doc, key


def test_meanings_come_from_the_source_comments():
    from reproductions.translation.config import TranslationConfig

    by_key = {k.key: k for k in config_reference.keys(TranslationConfig)}
    assert by_key["train.max_steps"].meaning == "-1: no step limit"
    assert by_key["decode.beam"].meaning == "1: greedy"
    assert by_key["train.max_minutes"].meaning.startswith("opt-in wall-clock cap")  # the comment above the field
    assert by_key["train.max_steps"].default == "-1" and by_key["train.max_steps"].type == "int"


def test_cli_config_list_json():
    out = subprocess.run([sys.executable, "-m", "harness.cli", "config", "--list", "vaswani2017", "--json"],
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout
    (config,) = json.loads(out)
    assert config["config_class"].endswith(":TransformerTranslationConfig")
    assert {"model.d_model", "train.max_steps", "decode.min_len"} <= {k["key"] for k in config["keys"]}


def test_cli_config_without_list_is_a_one_line_error():
    done = subprocess.run([sys.executable, "-m", "harness.cli", "config"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and done.stderr.startswith("attnrepro: error:") and done.stderr.count("\n") == 1
