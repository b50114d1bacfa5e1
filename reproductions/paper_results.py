"""The papers' reported numbers, `reproductions/NAME/paper_results.yaml`: one source for the report, `reproduce`
and the leaderboards' paper rows.

Every cell names what it was measured on (dataset, pair, split) and how (metric key and convention), so that it
is compared only with a run of the same data scored the same way. A metric key of `metrics.json` has exactly
one convention (`CONVENTIONS`); a cell whose convention does not fit its metric is an error naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .common.config import ConfigError, load_yaml

# metric key in metrics.json["splits"][SPLIT] -> the convention it is scored with
CONVENTIONS: dict[str, str] = {
    "bleu": "sacrebleu", "chrf": "sacrebleu",
    "tok_bleu": "tok_bleu", "tok_bleu_no_unk": "tok_bleu",
    "lc_tok_bleu": "lc_tok_bleu",
    **{f"bleu{n}": "coco" for n in range(1, 5)},
    **{f"bleu{n}_nobp": "bleu_nobp" for n in range(1, 5)},
    "meteor": "coco", "rouge_l": "coco", "cider_d": "coco",
}
# one sentence per convention: why the numbers of two conventions differ (report and README tables)
WHY = {
    "sacrebleu": "sacreBLEU on detokenised output against the raw references (13a tokenisation, cased)",
    "tok_bleu": "BLEU on Moses-tokenised text (multi-bleu.perl's convention; into German also Vaswani et al.'s "
                "##AT## compound splitting), which counts punctuation and split compounds as words and usually "
                "reads higher than sacreBLEU",
    "lc_tok_bleu": "lowercased BLEU on Moses-tokenised text against Multi30k's official tokenised references "
                   "(the Multi30k literature's convention); lowercasing alone adds points over cased sacreBLEU",
    "coco": "pycocoevalcap (coco-caption) on PTB-tokenised captions, BLEU with its brevity penalty",
    "bleu_nobp": "caption BLEU without the brevity penalty, as Xu et al. 2015 and Vinyals et al. 2015 report; "
                 "never below pycocoevalcap's, and above it when captions are shorter than the references",
}


@dataclass
class Tolerance:
    reproduced: float = 1.0  # |ours - paper| at most this: reproduced
    within: float = 2.5  # at most this: within tolerance


@dataclass
class PaperCell:
    model: str  # registry name of the model the cell reports
    label: str  # the row's name in the paper's table
    dataset: str
    split: str
    metric: str  # key in metrics.json["splits"][SPLIT]
    convention: str  # how it was scored: a value of CONVENTIONS
    value: float
    pair: str | None = None  # translation: the language pair; captioning: none
    preset: str | None = None  # the preset that trains this row's setting; none: a reference point, no verdict
    column: str | None = None  # the paper's column, when its table has several for one metric ("All", "No UNK")
    source: str | None = None  # overrides the file's source for this cell (e.g. a reference point's paper)


@dataclass
class PaperResults:
    source: str = ""  # the table the cells come from; a cell may name its own
    cells: list[PaperCell] = field(default_factory=list)
    tolerance: Tolerance = field(default_factory=Tolerance)


def load(path: Path | str) -> PaperResults:
    """One paper_results.yaml, checked: unknown keys, a convention that does not fit the metric."""
    try:
        results = load_yaml(PaperResults, path, what="paper results")
    except TypeError as err:  # a cell lacking a required key (model, label, dataset, split, metric, ...)
        raise ConfigError(f"{path}: {err}") from None
    for i, cell in enumerate(results.cells):
        expected = CONVENTIONS.get(cell.metric)
        if expected is None:
            raise ConfigError(f"{path}: cells[{i}].metric '{cell.metric}' is not a known metric "
                              f"({', '.join(CONVENTIONS)})")
        if cell.convention != expected:
            raise ConfigError(f"{path}: cells[{i}] ({cell.label}) says convention '{cell.convention}' for metric "
                              f"'{cell.metric}', which is scored as '{expected}'")
        cell.source = cell.source or results.source
        if not cell.source:
            raise ConfigError(f"{path}: cells[{i}] ({cell.label}) names no source, and the file has none")
    return results


def all_cells() -> list[tuple[PaperCell, Tolerance]]:
    """Every cell of every reproduction folder's paper_results.yaml, with its file's tolerance."""
    from . import registry

    out = []
    for folder in sorted({r.folder for r in registry.REPRODUCTIONS.values()}):
        path = folder / "paper_results.yaml"
        if path.is_file():
            results = load(path)
            out += [(cell, results.tolerance) for cell in results.cells]
    return out


def cells_for(dataset: str, pair: str | None, split: str) -> list[PaperCell]:
    """The cells measured on this data (a leaderboard's paper rows, a README table)."""
    return [c for c, _ in all_cells() if (c.dataset, c.pair or None, c.split) == (dataset, pair or None, split)]


def run_data(data_cfg: dict) -> tuple[str, str | None]:
    """(dataset, pair) of a run's `data` config, as cells name them: captioning runs on Karpathy's split files
    are named by the file (`dataset_flickr30k.json` -> flickr30k, `dataset_coco.json` -> coco)."""
    dataset = data_cfg.get("dataset", "")
    if dataset == "karpathy" and data_cfg.get("karpathy_json"):
        stem = Path(data_cfg["karpathy_json"]).stem
        dataset = stem.removeprefix("dataset_")
    return dataset, data_cfg.get("pair") or None


# A primary-convention metric and the papers' metrics that measure the same thing another way: a paper number of
# the latter is shown beside the former (report rows, leaderboard columns), never compared with it.
COUNTERPARTS: dict[str, tuple[str, ...]] = {
    "bleu": ("tok_bleu", "tok_bleu_no_unk", "lc_tok_bleu"),
    **{f"bleu{n}": (f"bleu{n}_nobp",) for n in range(1, 5)},
}


def board_rows(dataset: str, pair: str | None, split: str, columns: list[str]) -> list[dict]:
    """A leaderboard's paper rows: one per model and row label of the papers' tables on this data. A number goes
    under a board column only when it is that column's metric (the same convention); a number of another
    convention is shown beside its counterpart column (`beside`), so that it is never ranked with ours."""
    rows: dict[tuple, dict] = {}
    for cell in cells_for(dataset, pair, split):
        row = rows.setdefault((cell.model, cell.label, cell.preset), {
            "model": cell.label, "reproduction": cell.model, "scores": {}, "beside": {}, "source": cell.source})
        if cell.metric in columns:
            row["scores"][cell.metric] = cell.value
            continue
        column = next((c for c in columns if cell.metric in COUNTERPARTS.get(c, ())), None)
        if column is not None:
            note = ", ".join(x for x in (cell.convention, cell.column) if x)
            text = f"{cell.value:g} ({note})"
            row["beside"][column] = f"{row['beside'][column]}; {text}" if column in row["beside"] else text
    return list(rows.values())
