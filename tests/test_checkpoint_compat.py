"""Checkpoints written before the models' code moved (from `reproductions/common/` into the paper folders)
still load and compute what they computed then: the fixtures under tests/fixtures/pre-wings/."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reproductions.loading import load_model

FIXTURES = Path(__file__).parent / "fixtures" / "pre-wings"


def _inputs(name: str, loaded) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed inputs expected.pt was computed on (the same generator calls as when it was written)."""
    g = torch.Generator().manual_seed(0)
    if loaded.task == "translation":
        return (torch.randint(4, len(loaded.src_vocab), (2, 7), generator=g),
                torch.randint(4, len(loaded.tgt_vocab), (2, 5), generator=g))
    return (torch.randn(2, 49, 1280, generator=g), torch.randint(4, len(loaded.tgt_vocab), (2, 6), generator=g))


@pytest.mark.parametrize("name", ["bahdanau2014", "xu2015-hard"])
def test_a_checkpoint_from_before_the_move_loads_and_computes_the_same(name):
    expected = torch.load(FIXTURES / "expected.pt", weights_only=True)[name]
    loaded = load_model(FIXTURES / f"{name}.ckpt")
    assert loaded.reproduction == name
    with torch.no_grad():
        logits, extras = loaded.model(*_inputs(name, loaded))
    attention = extras if loaded.task == "translation" else extras["alpha"]
    torch.testing.assert_close(logits, expected["logits"], rtol=0, atol=0)
    torch.testing.assert_close(attention, expected["attention"], rtol=0, atol=0)
