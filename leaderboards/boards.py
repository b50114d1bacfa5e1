"""Boards as data: `leaderboards/boards/NAME.yaml` says what a board scores (task, dataset, split), which
reference files it scores against (by sha256), and with which metric (name, version, signature, primary
column). A board whose references are missing or fail their checksum, or whose metric version differs
from the one installed, is closed and says why.

Parsing and scoring go through the task objects of `reproductions.tasks` (the reproductions' own metric
code: sacreBLEU, pycocoevalcap), so a board's number and `attnrepro evaluate`'s agree; the metric code runs
in a worker process (`leaderboards.scoring`).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import shutil
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from reproductions import paper_results, tasks
from reproductions.common.config import ConfigError, load_yaml
from reproductions.common.errors import AttnreproError
from reproductions.common.submissions import (
    MAX_CAPTION_CHARS,
    MAX_CAPTION_WORDS,
    MAX_LINE_CHARS,
    SubmissionError,
    decode_outputs,
)

from .scoring import ScoringFailed, ScoringWorker

BOARDS_DIR = Path(__file__).parent / "boards"

__all__ = ["BOARDS_DIR", "Board", "BoardError", "ScoringFailed", "SubmissionError", "load_boards", "parse_board"]


class BoardError(AttnreproError):
    """A board definition that cannot be used: names the file and the key."""


@dataclass(frozen=True)
class RefFile:
    path: str  # relative to the reference root
    sha256: str


@dataclass(frozen=True)
class MetricSpec:
    name: str  # sacrebleu | pycocoevalcap
    version: str  # the package version the board's numbers were defined with
    signature: str
    primary: str
    columns: list[str]
    higher_is_better: bool = True


@dataclass(frozen=True)
class Limits:
    """Checked before any metric runs (see reproductions/common/submissions.py for the defaults' reasons)."""
    max_line_chars: int = MAX_LINE_CHARS  # characters per translation line
    max_caption_words: int = MAX_CAPTION_WORDS  # words per caption
    max_caption_chars: int = MAX_CAPTION_CHARS


@dataclass
class BoardSpec:
    """A board definition file, `leaderboards/boards/NAME.yaml`, as written."""
    title: str = ""
    task: str = ""  # a task of reproductions.tasks: translation | captioning
    dataset: str = ""
    split: str = ""
    references: list[RefFile] = field(default_factory=list)  # under the server's reference root
    metric: MetricSpec | None = None
    note: str | None = None
    pair: str | None = None
    hidden_references: bool = False
    images: list[RefFile] = field(default_factory=list)  # captioning: the list of image ids to caption
    limits: Limits = field(default_factory=Limits)
    paper_rows: list[dict] = field(default_factory=list)  # filled from reproductions/*/paper_results.yaml


REQUIRED = ("title", "task", "dataset", "split", "references", "metric")


@dataclass
class Board(BoardSpec):
    """A loaded board: its definition, whether it is open here (and if not, why), and its references."""
    name: str = ""
    status: str = "closed"
    reason: str | None = "not loaded"
    segments: int | None = None  # lines (translation) or images (captioning) a submission must have
    image_ids: list[str] = field(default_factory=list, repr=False)
    _refs: list = field(default_factory=list, repr=False)  # never leaves the server

    @property
    def is_open(self) -> bool:
        return self.status == "open"

    def public(self) -> dict:
        """What the API and pages show: the definition and checksums, never the references."""
        return {
            "name": self.name, "title": self.title, "note": self.note, "task": self.task, "dataset": self.dataset,
            "pair": self.pair, "split": self.split, "hidden_references": self.hidden_references,
            "status": self.status, "reason": self.reason, "segments": self.segments,
            "segment": tasks.get(self.task).segment,
            "references": [{"path": r.path, "sha256": r.sha256} for r in self.references + self.images],
            "metric": dataclasses.asdict(self.metric), "limits": dataclasses.asdict(self.limits),
            "paper_rows": self.paper_rows,
        }

    # -- submissions ---------------------------------------------------------------------------------

    def parse(self, data: bytes) -> list[str]:
        """The submitted file -> one hypothesis per segment, in the references' order (SubmissionError if not).
        Captions are JSON, whose escapes can spell a lone surrogate; none reaches the metric code."""
        hyps = tasks.get(self.task).parse_submission(data, self)
        for i, hyp in enumerate(hyps):
            try:
                hyp.encode("utf-8")
            except UnicodeEncodeError as err:
                raise SubmissionError("outputs", f"segment {i + 1} holds U+{ord(hyp[err.start]):04X}, a lone "
                                                 "surrogate that is not valid Unicode; send text that encodes as "
                                                 "UTF-8") from None
        return hyps

    def score(self, hyps: list[str], worker: ScoringWorker) -> dict:
        """Server-side scores of parsed hypotheses, computed in `worker`'s process: the metric columns, the
        primary value and the signature. Raises ScoringFailed (the metric code failed, timed out or ran out of
        memory on this submission)."""
        result = worker.run(compute, self.task, hyps, self._refs)
        signature = result.get("bleu_signature", self.metric.signature)
        if signature != self.metric.signature:  # checked at load; a changed install lands here
            raise ScoringFailed(f"sacreBLEU signature {signature} differs from board {self.name}'s "
                                f"{self.metric.signature}")
        scores = {column: result[column] for column in self.metric.columns}
        detail = {key: value for key, value in result.items() if key not in scores}
        return {"scores": scores, "primary": scores[self.metric.primary], "signature": self.metric.signature,
                "metric_version": self.metric.version, "detail": detail}


def compute(task: str, hyps: list[str], refs: list) -> dict:
    """The task's own metric code (runs in the scoring worker's process)."""
    return tasks.get(task).score(hyps, refs)


# -- loading ------------------------------------------------------------------------------------------


def load_boards(boards_dir: Path | str | None = None, references_root: Path | str | None = None) -> dict[str, Board]:
    """Every board of `boards_dir`, each opened against the reference files under `references_root`."""
    boards_dir = Path(boards_dir or BOARDS_DIR)
    files = sorted(boards_dir.glob("*.yaml"))
    if not files:
        raise BoardError(f"{boards_dir} holds no board definitions (*.yaml)")
    boards = {}
    for path in files:
        board = parse_board(path)
        open_board(board, Path(references_root) if references_root else None)
        boards[board.name] = board
    return boards


def parse_board(path: Path) -> Board:
    try:
        spec = load_yaml(BoardSpec, path, what="board")
    except ConfigError as err:
        raise BoardError(str(err)) from None
    except TypeError as err:  # a section (metric, a reference) lacking a key of its dataclass
        raise BoardError(f"{path}: {err}") from None
    for key in REQUIRED:
        if getattr(spec, key) in (None, "", []):
            raise BoardError(f"{path}: missing key '{key}'")
    metric = spec.metric
    if spec.task not in tasks.TASKS:
        raise BoardError(f"{path}: task '{spec.task}' is not one of {', '.join(tasks.TASKS)}")
    metrics = {t.board_metric: t.name for t in tasks.TASKS.values()}
    if metrics.get(metric.name) != spec.task:
        raise BoardError(f"{path}: metric.name '{metric.name}' does not score {spec.task} "
                         f"({', '.join(f'{m}: {t}' for m, t in metrics.items())})")
    if metric.primary not in metric.columns:
        raise BoardError(f"{path}: metric.primary '{metric.primary}' is not one of metric.columns")
    if tasks.get(spec.task).board_needs_images and not spec.images:
        raise BoardError(f"{path}: a {spec.task} board needs 'images' (the list of image ids to caption)")
    if spec.paper_rows:  # one source for every number: the reproductions' paper_results.yaml
        raise BoardError(f"{path}: paper_rows are read from reproductions/*/paper_results.yaml (the cells of this "
                         "board's dataset, pair and split); remove them here")
    refs = [dataclasses.replace(r, sha256=r.sha256.lower()) for r in spec.references]
    images = [dataclasses.replace(r, sha256=r.sha256.lower()) for r in spec.images]
    values = {f.name: getattr(spec, f.name) for f in dataclasses.fields(BoardSpec)}
    values["paper_rows"] = paper_results.board_rows(spec.dataset, spec.pair, spec.split, list(metric.columns))
    return Board(**{**values, "references": refs, "images": images}, name=path.stem)


def open_board(board: Board, root: Path | None) -> Board:
    """Check the metric install and the reference files; load the references or close the board with a reason."""
    board.status, board.reason = "closed", None
    installed = _installed(board.metric.name)
    if installed != board.metric.version:
        board.reason = (f"the server has {board.metric.name} {installed or '(not installed)'}, this board scores "
                        f"with {board.metric.version}; install {board.metric.name}=={board.metric.version}")
        return board
    if board.metric.name == "sacrebleu":
        from sacrebleu.metrics import BLEU

        bleu = BLEU()
        bleu.corpus_score(["."], [["."]])  # the signature includes nrefs, known after a first score
        signature = str(bleu.get_signature())
        if signature != board.metric.signature:
            board.reason = f"sacreBLEU's default signature here is {signature}, the board's {board.metric.signature}"
            return board
    elif shutil.which("java") is None:
        board.reason = "the server has no Java, which pycocoevalcap needs for its tokenizer and METEOR"
        return board
    if root is None:
        board.reason = "the server has no reference root (set --references or ATTNREPRO_DATA)"
        return board
    texts = []
    for ref in board.references + board.images:
        text, problem = _read_checked(root, ref)
        if problem:
            board.reason = problem
            return board
        texts.append(text)
    try:
        board._refs, image_ids = tasks.get(board.task).board_references(texts)
    except ValueError as err:
        board.reason = f"{', '.join(r.path for r in board.references + board.images)}: {err}"
        return board
    board.image_ids = image_ids or []
    board.segments = len(board._refs)
    board.status = "open"
    return board


def _read_checked(root: Path, ref: RefFile) -> tuple[str | None, str | None]:
    if Path(ref.path).is_absolute() or ".." in Path(ref.path).parts:
        return None, f"reference path {ref.path} leaves the reference root"
    path = root / ref.path
    if not path.is_file():
        return None, f"reference file {ref.path} is not on this server (under its reference root)"
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != ref.sha256:
        return None, (f"reference file {ref.path} fails its checksum (sha256 {digest[:12]}..., "
                      f"the board says {ref.sha256[:12]}...)")
    try:
        return decode_outputs(gzip.decompress(data) if path.suffix == ".gz" else data, ref.path), None
    except (OSError, EOFError, SubmissionError) as err:  # a damaged gzip stream, not UTF-8, NUL bytes
        return None, f"reference file {ref.path} cannot be read: {err}"


def _installed(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
