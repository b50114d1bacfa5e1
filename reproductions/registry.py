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
    task: str  # names its task object in `reproductions.tasks` ("translation" or "captioning")
    role: str  # "paper" (attention) or "baseline" (fixed vector)
    baseline: str | None  # for a paper: the registry name of its fixed-vector baseline
    builder: str  # "module:function" -> build(cfg, *vocab_sizes) -> nn.Module (translation: src, tgt sizes)
    config_class: str  # "module:Class", the typed config
    datasets: tuple[str, ...]
    aliases: tuple[str, ...] = field(default=())
    folder_name: str | None = None  # paper folder, when several entries share one (xu2015: soft and hard)
    fixed: tuple[str, ...] = field(default=())  # overrides that define this entry, applied before the user's
    # A baseline trains under its paper model's preset files (the same data, optimiser and budget by construction):
    # only `fixed` and the builder differ. tests/test_registry_contract.py checks the resolved configs.
    presets_from: str | None = None
    # Overrides of single presets of `presets_from`, e.g. a paper's own budget for the baseline's row:
    # ((preset, (override, ...)), ...); tests/test_structure.py allows exactly these keys to differ.
    preset_overrides: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())
    folder_path: Path | None = None  # outside reproductions/ (a plug-in or a test's throw-away entry)

    @property
    def folder(self) -> Path:
        return self.folder_path or ROOT / (self.folder_name or self.name)

    @property
    def config_folder(self) -> Path:
        return get(self.presets_from).config_folder if self.presets_from else self.folder / "configs"

    def presets(self) -> list[str]:
        order = {"tiny": 0, "quick": 1, "cpu": 2, "gpu": 3, "paper": 4}
        names = [p.stem for p in self.config_folder.glob("*.yaml")]
        return sorted(names, key=lambda n: (order.get(n, 9), n))

    def config_path(self, preset: str) -> Path:
        path = self.config_folder / f"{preset}.yaml"
        if not path.exists():
            raise UnknownNameError(
                f"{self.name} has no preset '{preset}'; its presets are: {', '.join(self.presets())}"
            )
        return path

    def load_config(self, preset: str, overrides: list[str] | tuple = (), pair: str | None = None):
        """The preset with `overrides` applied; `pair` is shorthand for data.pair=PAIR."""
        from .common.config import load_config

        own = dict(self.preset_overrides).get(preset, ())
        overrides = list(self.fixed) + list(own) + list(overrides) + ([f"data.pair={pair}"] if pair else [])
        return load_config(_resolve(self.config_class), self.config_path(preset), overrides)

    def config_from_dict(self, data: dict, where: str):
        from .common.config import from_dict, validate

        return validate(from_dict(_resolve(self.config_class), data, where))

    def build(self, cfg, *vocab_sizes: int):
        return _resolve(self.builder)(cfg, *vocab_sizes)


_RNN_CONFIG = "reproductions.translation.rnn:RNNTranslationConfig"
_CAPTION_CONFIG = "reproductions.captioning.config:CaptionConfig"
_CAPTION_DATASETS = ("flickr8k", "flickr30k", "coco")

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
            presets_from="bahdanau2014",
            # Bahdanau et al. Table 2: the models trained for equal time, so RNNencdec made more updates.
            preset_overrides=(("paper", ("train.max_steps=600000",)), ("paper30", ("train.max_steps=846000",)),
                              ("paper_ende", ("train.max_steps=600000",))),
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
        Reproduction(
            name="xu2015",
            title="Soft-Attention",
            paper="Xu et al. 2015",
            arxiv="1502.03044v3",
            task="captioning",
            role="paper",
            baseline="vinyals2015",
            builder="reproductions.xu2015.model:build",
            config_class=_CAPTION_CONFIG,
            datasets=_CAPTION_DATASETS,
            aliases=("xu2016", "xu2015-soft", "xu2016-soft", "show-attend-tell"),
            fixed=("model.context=soft",),
        ),
        Reproduction(
            name="xu2015-hard",
            title="Hard-Attention",
            paper="Xu et al. 2015",
            arxiv="1502.03044v3",
            task="captioning",
            role="paper",
            baseline="vinyals2015",
            builder="reproductions.xu2015.model:build",
            config_class=_CAPTION_CONFIG,
            datasets=_CAPTION_DATASETS,
            aliases=("xu2016-hard",),
            folder_name="xu2015",
            fixed=("model.context=hard",),
        ),
        Reproduction(
            name="vinyals2015",
            title="Show and Tell (NIC)",
            paper="Vinyals et al. 2015",
            arxiv="1411.4555v2",
            task="captioning",
            role="baseline",
            baseline=None,
            builder="reproductions.vinyals2015.model:build",
            config_class=_CAPTION_CONFIG,
            datasets=_CAPTION_DATASETS,
            aliases=("show-and-tell", "nic"),
            fixed=("model.context=fixed",),
            presets_from="xu2015",
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


def register(repro: Reproduction) -> Reproduction:
    """Add an entry (a new paper outside this package, or a test's throw-away one); its name must be new."""
    if repro.name in REPRODUCTIONS:
        raise ValueError(f"reproduction '{repro.name}' is registered already")
    from . import tasks

    tasks.get(repro.task)  # an unknown task fails here, not at training time
    REPRODUCTIONS[repro.name] = repro
    return repro


def papers() -> list[Reproduction]:
    return [r for r in REPRODUCTIONS.values() if r.role == "paper"]


def baseline_preset_candidates(preset: str, baseline_presets: list[str]) -> list[str]:
    """The presets a paper model's baseline may train under beside its `preset`, in order: the same preset, then
    (at paper scale) the baseline's other paper presets. The pairing keeps the first that trains on the same
    data (`attnrepro reproduce` from the configs, the report from the runs it finds): cho2014's En-De preset
    beside the En-De Transformer."""
    candidates = [preset] if preset in baseline_presets else []
    if preset.startswith("paper"):
        candidates += sorted(p for p in set(baseline_presets) if p.startswith("paper") and p != preset)
    return candidates
