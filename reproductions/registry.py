"""The one registry of reproductions: the CLI, the harness, the leaderboard and the tests all go through it.

An entry is plain data (importing this module imports no torch): where its builder and config class
live, its presets (the YAML files in its `configs/` folder), its paper and its fixed-vector baseline.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from pathlib import Path

from .common.errors import AttnreproError

ROOT = Path(__file__).resolve().parent


class UnknownNameError(AttnreproError):
    pass


def _resolve(dotted: str):
    module, attr = dotted.split(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Reproduction:
    name: str
    title: str  # the model's name in its paper
    paper: str  # citation key as the papers are usually cited
    arxiv: str  # pinned version the equations are cited against
    task: str  # "translation" or "captioning"
    role: str  # "paper" (attention) or "baseline" (fixed vector)
    baseline: str | None  # for a paper: the registry name of its fixed-vector baseline
    builder: str  # "module:function" -> build(cfg, src_vocab_size, tgt_vocab_size) -> nn.Module
    config_class: str  # "module:Class", the typed config
    datasets: tuple[str, ...]
    aliases: tuple[str, ...] = field(default=())

    @property
    def folder(self) -> Path:
        return ROOT / self.name

    def presets(self) -> list[str]:
        order = {"tiny": 0, "quick": 1, "cpu": 2, "paper": 3}
        names = [p.stem for p in (self.folder / "configs").glob("*.yaml")]
        return sorted(names, key=lambda n: (order.get(n, 9), n))

    def config_path(self, preset: str) -> Path:
        path = self.folder / "configs" / f"{preset}.yaml"
        if not path.exists():
            raise UnknownNameError(
                f"{self.name} has no preset '{preset}'; its presets are: {', '.join(self.presets())}"
            )
        return path

    def load_config(self, preset: str, overrides: list[str] | tuple = (), pair: str | None = None):
        """The preset with `overrides` applied; `pair` is shorthand for data.pair=PAIR."""
        from .common.config import load_config

        overrides = list(overrides) + ([f"data.pair={pair}"] if pair else [])
        return load_config(_resolve(self.config_class), self.config_path(preset), overrides)

    def config_from_dict(self, data: dict, where: str):
        from .common.config import from_dict

        return from_dict(_resolve(self.config_class), data, where)

    def build(self, cfg, src_vocab_size: int, tgt_vocab_size: int):
        return _resolve(self.builder)(cfg, src_vocab_size, tgt_vocab_size)


_RNN_CONFIG = "reproductions.common.rnn:RNNTranslationConfig"

REPRODUCTIONS: dict[str, Reproduction] = {
    r.name: r
    for r in [
        Reproduction(
            name="bahdanau2014",
            title="RNNsearch",
            paper="Bahdanau, Cho, Bengio 2014",
            arxiv="1409.0473v7",
            task="translation",
            role="paper",
            baseline="cho2014",
            builder="reproductions.bahdanau2014.model:build",
            config_class=_RNN_CONFIG,
            datasets=("multi30k", "wmt14"),
            aliases=("rnnsearch",),
        ),
        Reproduction(
            name="cho2014",
            title="RNNencdec",
            paper="Cho et al. 2014",
            arxiv="1406.1078v3",
            task="translation",
            role="baseline",
            baseline=None,
            builder="reproductions.cho2014.model:build",
            config_class=_RNN_CONFIG,
            datasets=("multi30k", "wmt14"),
            aliases=("rnnencdec",),
        ),
        Reproduction(
            name="vaswani2017",
            title="Transformer",
            paper="Vaswani et al. 2017",
            arxiv="1706.03762v7",
            task="translation",
            role="paper",
            baseline="cho2014",
            builder="reproductions.vaswani2017.model:build",
            config_class="reproductions.vaswani2017.model:TransformerTranslationConfig",
            datasets=("multi30k", "wmt14"),
            aliases=("transformer",),
        ),
    ]
}


def get(name: str) -> Reproduction:
    for repro in REPRODUCTIONS.values():
        if name == repro.name or name in repro.aliases:
            return repro
    known = [r.name for r in REPRODUCTIONS.values()] + [a for r in REPRODUCTIONS.values() for a in r.aliases]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise UnknownNameError(
        f"unknown reproduction '{name}'.{hint} Known: {', '.join(REPRODUCTIONS)} (see `attnrepro list`)"
    )


def papers() -> list[Reproduction]:
    return [r for r in REPRODUCTIONS.values() if r.role == "paper"]
