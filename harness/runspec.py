"""One run, specified once: what `train`, `sweep` and `reproduce` pass around.

A `RunSpec` names the registry entry, preset, seed, language pair and overrides of a run, where it writes and
on how many processes it trains, and holds the config those resolve to. The config is resolved (and checked)
once, when the spec is made: a sweep's plan resolves each run as it is read, and the job that trains the run,
in this process or on a SLURM node, gets the same config object with the spec, never reading the preset again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reproductions import registry, tasks
from reproductions.common import rundir
from reproductions.common.config import to_dict


@dataclass
class RunSpec:
    name: str  # registry entry
    preset: str
    seed: int
    pair: str | None  # translation: the language pair (None: the preset's); captioning: None
    overrides: list[str]  # KEY=VALUE, applied after the preset and the pair
    devices: int | str
    nodes: int
    run_dir: Path
    env: dict = field(default_factory=dict)  # extra environment variables for the run's process (sweeps)
    cfg: Any = None  # the resolved config; None: resolved from the fields above when the spec is made

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        if self.cfg is None:
            self.cfg = registry.get(self.name).load_config(self.preset, list(self.overrides), pair=self.pair)

    @classmethod
    def new(cls, name: str, preset: str, seed: int = 1, pair: str | None = None, overrides: list[str] | tuple = (),
            run_dir: Path | str | None = None, devices: int | str = "auto", nodes: int = 1, cfg: Any = None) -> RunSpec:
        """A spec whose run directory, when not given, is the default one (runs/NAME/PRESET-SETTING-seedN-TIME)."""
        repro = registry.get(name)
        spec = cls(repro.name, preset, seed, pair, list(overrides), devices, nodes, Path(run_dir or "."), cfg=cfg)
        if run_dir is None:
            tag = tasks.get(repro.task).setting(to_dict(spec.cfg)["data"])
            spec.run_dir = rundir.default_run_dir(repro.name, preset, tag, seed)
        return spec

    @classmethod
    def of_run(cls, run: rundir.RunDir, devices: int | str = "auto", nodes: int = 1) -> RunSpec:
        """The spec of a run already started (resume): its own config, preset and seed, from its directory."""
        repro = registry.get(run.reproduction)
        cfg = repro.config_from_dict(run.config, str(run.path / "config.yaml"))
        return cls(repro.name, run.preset, run.seed, None, [], devices, nodes, run.path, cfg=cfg)

    @property
    def repro(self):
        return registry.get(self.name)

    @property
    def task(self):
        return tasks.get(self.repro.task)

    @property
    def label(self) -> str:
        return self.run_dir.name
