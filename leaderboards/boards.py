"""Boards as data: `leaderboards/boards/NAME.yaml` says what a board scores (task, dataset, split), which
reference files it scores against (by sha256), and with which metric (name, version, signature, primary
column). A board whose references are missing or fail their checksum, or whose metric version differs
from the one installed, is closed and says why.

Scoring goes through the reproductions' own metric code (`reproductions.common.metrics`,
`reproductions.common.caption_metrics`), so a board's number and `attnrepro evaluate`'s agree.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import threading
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import yaml

from reproductions.common.errors import AttnreproError

BOARDS_DIR = Path(__file__).parent / "boards"
TASKS = ("translation", "captioning")
METRICS = {"sacrebleu": "translation", "pycocoevalcap": "captioning"}
BOARD_KEYS = {"title", "note", "task", "dataset", "pair", "split", "hidden_references", "references", "images",
              "metric", "paper_rows"}
METRIC_KEYS = {"name", "version", "signature", "primary", "columns"}
_CAPTION_SCORING = threading.Lock()  # pycocoevalcap runs Java tools over temp files in its package folder


class BoardError(AttnreproError):
    """A board definition that cannot be used: names the file and the key."""


class SubmissionError(ValueError):
    """A submission the board refuses; `field` names the part of the request at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


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
    columns: tuple[str, ...]
    higher_is_better: bool = True


@dataclass
class Board:
    name: str
    title: str
    note: str | None
    task: str
    dataset: str
    split: str
    pair: str | None
    hidden_references: bool
    references: list[RefFile]
    images: list[RefFile]
    metric: MetricSpec
    paper_rows: list[dict]
    status: str = "closed"
    reason: str | None = "not loaded"
    segments: int | None = None  # lines (translation) or images (captioning) a submission must have
    _refs: list = field(default_factory=list, repr=False)  # never leaves the server
    _image_ids: list[str] = field(default_factory=list, repr=False)

    @property
    def is_open(self) -> bool:
        return self.status == "open"

    def public(self) -> dict:
        """What the API and pages show: the definition and checksums, never the references."""
        return {
            "name": self.name, "title": self.title, "note": self.note, "task": self.task, "dataset": self.dataset,
            "pair": self.pair, "split": self.split, "hidden_references": self.hidden_references,
            "status": self.status, "reason": self.reason, "segments": self.segments,
            "references": [{"path": r.path, "sha256": r.sha256} for r in self.references + self.images],
            "metric": {"name": self.metric.name, "version": self.metric.version, "signature": self.metric.signature,
                       "primary": self.metric.primary, "columns": list(self.metric.columns),
                       "higher_is_better": self.metric.higher_is_better},
            "paper_rows": self.paper_rows,
        }

    # -- submissions ---------------------------------------------------------------------------------

    def parse(self, data: bytes) -> list[str]:
        """The submitted file -> one hypothesis per segment, in the references' order."""
        text = _decode(data)
        if self.task == "translation":
            return self._parse_lines(text)
        return self._parse_captions(text)

    def _parse_lines(self, text: str) -> list[str]:
        text = text.replace("\r\n", "\n")
        if text.endswith("\n"):
            text = text[:-1]
        lines = text.split("\n")  # not splitlines(): it also splits on \x0b, \x1c, \u2028, ...
        if len(lines) != self.segments:
            raise SubmissionError("outputs", f"has {len(lines)} lines; board {self.name} expects {self.segments}, "
                                             f"one detokenised translation per line of {self.split}.{_src(self)}, "
                                             "in order")
        return lines

    def _parse_captions(self, text: str) -> list[str]:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SubmissionError("outputs", f"is not valid JSON ({err.msg} at line {err.lineno}, "
                                             f"column {err.colno})") from None
        if isinstance(data, dict):
            items = list(data.items())
        elif isinstance(data, list) and all(isinstance(d, dict) and set(d) >= {"image", "caption"} for d in data):
            items = [(d["image"], d["caption"]) for d in data]
        else:
            raise SubmissionError("outputs", 'must be a JSON list of {"image": ..., "caption": ...} objects '
                                             '(a run\'s hyps/test.json) or an object {image: caption}')
        captions: dict[str, str] = {}
        for image, caption in items:
            if not isinstance(image, str) or not isinstance(caption, str):
                raise SubmissionError("outputs", f"image ids and captions must be strings (got {image!r})")
            if image in captions:
                raise SubmissionError("outputs", f"image {image!r} is captioned twice")
            captions[image] = caption
        wanted = set(self._image_ids)
        unknown = [i for i in captions if i not in wanted]
        if unknown:
            raise SubmissionError("outputs", f"{len(unknown)} image ids are not in {self.dataset} {self.split}, "
                                             f"e.g. {', '.join(repr(i) for i in unknown[:3])}")
        missing = [i for i in self._image_ids if i not in captions]
        if missing:
            raise SubmissionError("outputs", f"{len(missing)} of the {self.segments} {self.split} images have no "
                                             f"caption, e.g. {', '.join(missing[:3])}")
        return [captions[i] for i in self._image_ids]

    def score(self, hyps: list[str]) -> dict:
        """Server-side scores of parsed hypotheses: the metric columns, the primary value and the signature."""
        if self.task == "translation":
            from reproductions.common.metrics import corpus_scores

            result = corpus_scores(hyps, self._refs)
            if result["bleu_signature"] != self.metric.signature:  # checked at load; a changed install lands here
                raise RuntimeError(f"sacreBLEU signature {result['bleu_signature']} differs from board {self.name}'s "
                                   f"{self.metric.signature}")
            detail = {"bleu": result["bleu_detail"], "chrf_signature": result["chrf_signature"]}
        else:
            from reproductions.common.caption_metrics import caption_scores

            with _CAPTION_SCORING:
                result = caption_scores(hyps, self._refs)
            detail = {"settings": result["settings"], "spice": result["spice_unavailable"]}
        scores = {column: result[column] for column in self.metric.columns}
        return {"scores": scores, "primary": scores[self.metric.primary], "signature": self.metric.signature,
                "metric_version": self.metric.version, "detail": detail}


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
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise BoardError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(spec, dict):
        raise BoardError(f"{path}: a board is a mapping of {', '.join(sorted(BOARD_KEYS))}")
    unknown = set(spec) - BOARD_KEYS
    if unknown:
        raise BoardError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; "
                         f"a board has {', '.join(sorted(BOARD_KEYS))}")

    def need(mapping: dict, key: str, where: str = ""):
        if mapping.get(key) in (None, "", []):
            raise BoardError(f"{path}: missing key '{where}{key}'")
        return mapping[key]

    task = need(spec, "task")
    if task not in TASKS:
        raise BoardError(f"{path}: task '{task}' is not one of {', '.join(TASKS)}")
    metric = need(spec, "metric")
    if not isinstance(metric, dict) or set(metric) - METRIC_KEYS:
        raise BoardError(f"{path}: 'metric' takes the keys {', '.join(sorted(METRIC_KEYS))}")
    spec_metric = MetricSpec(
        name=need(metric, "name", "metric."), version=str(need(metric, "version", "metric.")),
        signature=need(metric, "signature", "metric."), primary=need(metric, "primary", "metric."),
        columns=tuple(need(metric, "columns", "metric.")),
    )
    if METRICS.get(spec_metric.name) != task:
        raise BoardError(f"{path}: metric.name '{spec_metric.name}' does not score {task} "
                         f"({', '.join(f'{m}: {t}' for m, t in METRICS.items())})")
    if spec_metric.primary not in spec_metric.columns:
        raise BoardError(f"{path}: metric.primary '{spec_metric.primary}' is not one of metric.columns")

    def files(key: str) -> list[RefFile]:
        out = []
        for i, entry in enumerate(spec.get(key) or []):
            if not isinstance(entry, dict) or set(entry) != {"path", "sha256"}:
                raise BoardError(f"{path}: {key}[{i}] must be {{path: ..., sha256: ...}}")
            out.append(RefFile(str(entry["path"]), str(entry["sha256"]).lower()))
        return out

    references = files("references")
    if not references:
        raise BoardError(f"{path}: missing key 'references'")
    images = files("images")
    if task == "captioning" and not images:
        raise BoardError(f"{path}: a captioning board needs 'images' (the list of image ids to caption)")
    rows = spec.get("paper_rows") or []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not {"model", "scores", "source"} <= set(row):
            raise BoardError(f"{path}: paper_rows[{i}] needs model, scores and source")
        extra = set(row["scores"]) - set(spec_metric.columns)
        if extra:
            raise BoardError(f"{path}: paper_rows[{i}].scores has {', '.join(sorted(extra))}, not in metric.columns")
    return Board(
        name=path.stem, title=str(need(spec, "title")), note=spec.get("note"), task=task,
        dataset=str(need(spec, "dataset")), split=str(need(spec, "split")), pair=spec.get("pair"),
        hidden_references=bool(spec.get("hidden_references")),
        references=references, images=images, metric=spec_metric, paper_rows=rows,
    )


def open_board(board: Board, root: Path | None) -> Board:
    """Check the metric install and the reference files; load the references or close the board with a reason."""
    board.status, board.reason = "closed", None
    installed = _installed(board.metric.name)
    if installed != board.metric.version:
        board.reason = (f"the server has {board.metric.name} {installed or '(not installed)'}, this board scores "
                        f"with {board.metric.version}; install {board.metric.name}=={board.metric.version}")
        return board
    if board.task == "translation":
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
    if board.task == "translation":
        refs = _lines(texts[0])
        board._refs, board.segments = refs, len(refs)
    else:
        from reproductions.common.data.captions import flickr8k_references

        captions = flickr8k_references(_lines(texts[0]))
        ids = [i for i in _lines(texts[1]) if i.strip()]
        lacking = [i for i in ids if i not in captions]
        if lacking:
            board.reason = f"{len(lacking)} images of {board.images[0].path} have no references, e.g. {lacking[0]}"
            return board
        board._image_ids, board._refs, board.segments = ids, [captions[i] for i in ids], len(ids)
    board.status = "open"
    return board


def _read_checked(root: Path, ref: RefFile) -> tuple[str | None, str | None]:
    if Path(ref.path).is_absolute() or ".." in Path(ref.path).parts:
        return None, f"reference path {ref.path} leaves the reference root"
    path = root / ref.path
    if not path.is_file():
        return None, f"reference file {ref.path} is not on this server (looked under {root})"
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != ref.sha256:
        return None, (f"reference file {ref.path} fails its checksum (sha256 {digest[:12]}..., "
                      f"the board says {ref.sha256[:12]}...)")
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8"), None


def _lines(text: str) -> list[str]:
    return (text[:-1] if text.endswith("\n") else text).split("\n")


def _decode(data: bytes) -> str:
    if not data.strip():
        raise SubmissionError("outputs", "is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise SubmissionError("outputs", f"is not valid UTF-8: byte 0x{data[err.start]:02x} at offset {err.start} "
                                         f"(line {line}); save the file as UTF-8") from None
    if "\x00" in text:
        line = text[:text.index("\x00")].count("\n") + 1
        raise SubmissionError("outputs", f"contains a NUL character (line {line})")
    return text.removeprefix("\ufeff")


def _src(board: Board) -> str:
    return board.pair.split("-")[0] if board.pair else "src"


def _installed(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
