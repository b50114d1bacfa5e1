"""What every task provides. Methods that need torch or Lightning import them inside, so that the CLI can
read a task's columns and file formats without loading torch."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Column:
    key: str  # the key in metrics.json["splits"][SPLIT]
    label: str  # the column header in tables, the report and the boards


class Task(ABC):
    """The interface every task implements (TranslationTask, CaptioningTask); abstract methods have no default."""

    name: str
    metric_title: str  # what the scores are, e.g. "sacreBLEU"
    columns: tuple[Column, ...]  # the metric columns shown in tables (the headline among them)
    headline: str  # the key of the metric that ranks and compares runs
    hyp_suffix: str  # hypothesis files: RUN_DIR/hyps/SPLIT{hyp_suffix}
    takes_pair: bool  # whether runs have a language pair (`--pair`, plans' `pairs`)
    batch_keys: tuple[str, str, str]  # (source, decoder input, target) of a training batch
    segment: str  # what one scored item is: "sentences", "images"
    paper_columns: tuple[Column, ...]  # beside `columns` in the report: the metrics of the papers' conventions
    board_metric: str  # the metric code a leaderboard of this task scores with (a board's metric.name)
    board_needs_images: bool  # a board of this task lists the images to caption
    command: str  # the CLI command that decodes new inputs with a model of this task
    explore_input: str  # what `attnrepro explore` asks a user for: "text" (typed) or "image" (picked or uploaded)

    @property
    def headline_label(self) -> str:
        return next(c.label for c in self.columns if c.key == self.headline)

    def hyps_path(self, run_dir: Path | str, split: str) -> Path:
        return Path(run_dir) / "hyps" / f"{split}{self.hyp_suffix}"

    @abstractmethod
    def setting(self, data_cfg: dict) -> str:
        """What a run was trained and scored on, for grouping runs: the language pair or the dataset."""

    # -- training ----------------------------------------------------------------------------------------------

    @abstractmethod
    def check_data(self, cfg) -> None:
        """Raise a DataError naming the first missing or corrupt file of a run's training, validation and test data,
        and what to do (a download, where no data root is set, happens here once). Cheap next to training: it
        reads the text files, and only checks that the images exist."""

    @abstractmethod
    def check_scoring(self, cfg) -> None:
        """Raise a clear error, before any work, when what scores the test splits after training is missing here
        (captioning: Java). Not called for `train --no-evaluate`, which scores elsewhere later."""

    @abstractmethod
    def data_module(self, cfg, seed: int, cache_dir: Path):
        """The loaded LightningDataModule of a run (vocabularies built, splits read)."""

    @abstractmethod
    def lightning_module(self, repro, cfg, data):
        """The LightningModule training `repro.build(...)` on `data`."""

    @abstractmethod
    def provenance(self, data, cfg) -> dict[str, Any]:
        """Facts about the run's data for provenance.json (sizes, vocabularies)."""

    def step_budget(self, trainer, data, train_cfg):
        """Set the Trainer's gradient accumulation from the tokens an optimiser step should see, for its number of
        processes; -> the plan (with `as_dict()`, recorded in metrics.json), or None where batches are not
        budgeted in tokens (the default: the configured accumulation stands)."""
        return None

    @abstractmethod
    def sample_batch(self, data, size: int = 32) -> dict:
        """A collated training batch (for counting FLOPs)."""

    # -- checkpoints and scoring -------------------------------------------------------------------------------

    @abstractmethod
    def model_from_checkpoint(self, repro, cfg, meta: dict):
        """(model, source vocabulary or None, output vocabulary) from a checkpoint's attnrepro section."""

    @abstractmethod
    def evaluate(self, loaded, run_dir: Path | None, splits: list[str] | None, device: str,
                 logger=None) -> tuple[dict, dict]:
        """Decode (with `loaded.cfg.decode`) and score splits (default: the configured test splits present) ->
        (results, skipped). Writes hyps/SPLIT files when `run_dir` is given."""

    @abstractmethod
    def run_figures(self, loaded, run_dir: Path, out: Path, splits: dict) -> tuple[dict[str, list[Path]], list[dict]]:
        """(figures by kind, sample rows for the W&B table) of a finished run."""

    @abstractmethod
    def paired_test(self, split: str, paper_run: Path, base_run: Path) -> dict | None:
        """p-value that the paper model is not better than the baseline on `split` (same seed, same data)."""

    # -- looking inside a model (`attnrepro explore`, the report's gallery) ------------------------------------

    @abstractmethod
    def attend(self, loaded, item, device: str = "cpu") -> dict:
        """One input (a sentence; an image file: a path or a binary file object) -> the output, the beam's
        alternatives with their scores and every attention view, as JSON-ready data (`reproductions.common.attend`
        describes it); a fixed-vector model's has `attends` False and no views."""

    @abstractmethod
    def examples(self, loaded, n: int) -> list[dict]:
        """Up to n inputs from the run's test split that this machine has: [{"id", "label", and "text" (the
        input) or "path" (an image file, never sent to a client)}]; [] when the split is not here."""

    # -- leaderboards ------------------------------------------------------------------------------------------

    @abstractmethod
    def board_references(self, texts: list[str]) -> tuple[list, list[str] | None]:
        """A board's reference files (their text, in the board's order) -> (references, image ids or None)."""

    @abstractmethod
    def parse_submission(self, data: bytes, board) -> list[str]:
        """A submitted outputs file -> one hypothesis per segment, in the references' order."""

    @abstractmethod
    def score(self, hyps: list[str], refs: list) -> dict:
        """The reproductions' own metric code over hypotheses and references."""
