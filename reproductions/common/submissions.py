"""Hypothesis files and submitted outputs: the one line-splitting rule of the project, and the parsing of
a translation file (one line per segment) or a caption file (JSON) into one hypothesis per reference.

The rule (`split_lines`): lines end at "\\n" only, and an "\\r" right before it belongs to the line end
("\\r\\n" files read the same as "\\n" files); a final line end is optional. Nothing else separates lines:
`str.splitlines()` also splits on \\x0b, \\x0c, \\x1c-\\x1e, \\x85, U+2028 and U+2029, which a model may
well emit inside a sentence, and then one file would have different line counts in different places.
The scorer, the leaderboard server, the report and the figures all read hypotheses through this module.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .errors import AttnreproError

# Limits checked before any metric runs: a pathological line costs sacreBLEU hundreds of MB, a very long
# caption makes METEOR's Java run out of heap. Boards may set their own (`limits:` in the board YAML).
MAX_LINE_CHARS = 5000  # the longest reference line of newstest2012-14 and Multi30k test has 723 characters
MAX_CAPTION_WORDS = 200  # Flickr8k references have at most 38 words and 199 characters
MAX_CAPTION_CHARS = 2000


class SubmissionError(ValueError):
    """Outputs that cannot be scored; `field` names the part of the request (or the file) at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def split_lines(text: str) -> list[str]:
    """`text` -> its lines, by the project's one rule (module docstring). "" has no lines; "\\n" has one."""
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":  # the final line end is a terminator, not the start of an empty line
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def decode_outputs(data: bytes, field: str = "outputs") -> str:
    """UTF-8 bytes -> text, without a leading BOM; empty or blank input (no word at all), invalid UTF-8 and NUL
    are errors: the one rule for submissions and for a run's own hypothesis files (`read_hyp_lines`)."""
    if not data.strip():
        raise SubmissionError(field, "is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise SubmissionError(field, f"is not valid UTF-8: byte 0x{data[err.start]:02x} at offset {err.start} "
                                     f"(line {line}); save the file as UTF-8") from None
    if "\x00" in text:
        line = text[:text.index("\x00")].count("\n") + 1
        raise SubmissionError(field, f"contains a NUL character (line {line})")
    return text.removeprefix("\ufeff")


def read_hyp_lines(path: Path | str) -> list[str]:
    """A hypothesis file (`hyps/SPLIT.txt`) -> one hypothesis per line, split by `split_lines`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AttnreproError(f"hypothesis file {path} does not exist") from None
    if not data:  # a split of no segments
        return []
    try:  # the server's rule for submissions, here too: lines without a single word are refused
        return split_lines(decode_outputs(data, str(path)))
    except SubmissionError as err:
        hint = (" (every line is blank: the model produced no words; decode again with decode.min_len=1)"
                if err.message == "is empty" else "")
        raise AttnreproError(str(err) + hint) from None


def parse_translation_outputs(data: bytes, segments: int, what: str, *,
                              max_line_chars: int = MAX_LINE_CHARS) -> list[str]:
    """A submitted translation file -> its `segments` lines. `what` names the source the lines translate, for
    the count error: "has 3 lines; expected 1000: one detokenised translation per line of {what}, in order"."""
    lines = split_lines(decode_outputs(data))
    if len(lines) != segments:
        raise SubmissionError("outputs", f"has {len(lines)} lines; expected {segments}: one detokenised translation "
                                         f"per line of {what}, in order")
    for number, line in enumerate(lines, start=1):
        if len(line) > max_line_chars:
            raise SubmissionError("outputs", f"line {number} has {len(line)} characters; the board takes at most "
                                             f"{max_line_chars} per line")
    return lines


def parse_caption_outputs(data: bytes, image_ids: list[str], *, max_words: int = MAX_CAPTION_WORDS,
                          max_chars: int = MAX_CAPTION_CHARS) -> list[str]:
    """A submitted caption file -> one caption per id of `image_ids`, in that order. Two forms: a run's
    `hyps/test.json` (a list of {"image": ID, "caption": TEXT, ...}) or an object {ID: TEXT}. A repeated
    key, an image captioned twice, an unknown or missing image and a non-finite number are all errors."""
    try:
        parsed = strict_json_loads(decode_outputs(data))
    except ValueError as err:
        raise SubmissionError("outputs", f"is not valid JSON ({err})") from None
    if isinstance(parsed, dict):
        items = list(parsed.items())
    elif isinstance(parsed, list) and all(isinstance(d, dict) and {"image", "caption"} <= set(d) for d in parsed):
        items = [(d["image"], d["caption"]) for d in parsed]
    else:
        raise SubmissionError("outputs", 'must be a JSON list of {"image": ..., "caption": ...} objects '
                                         '(a run\'s hyps/test.json) or an object {image: caption}')
    captions: dict[str, str] = {}
    for image, caption in items:
        if not isinstance(image, str) or not isinstance(caption, str):
            raise SubmissionError("outputs", f"image ids and captions must be strings (got {_short(image)})")
        if image in captions:
            raise SubmissionError("outputs", f"image {_short(image)} is captioned twice")
        if len(caption) > max_chars or len(caption.split()) > max_words:
            raise SubmissionError("outputs", f"the caption of image {_short(image)} has {len(caption.split())} words "
                                             f"and {len(caption)} characters; the board takes at most {max_words} "
                                             f"words and {max_chars} characters")
        captions[image] = caption
    wanted = set(image_ids)
    unknown = [i for i in captions if i not in wanted]
    if unknown:
        raise SubmissionError("outputs", f"{len(unknown)} image ids are not among the board's images, "
                                         f"e.g. {', '.join(_short(i) for i in unknown[:3])}")
    missing = [i for i in image_ids if i not in captions]
    if missing:
        raise SubmissionError("outputs", f"{len(missing)} of the {len(image_ids)} images have no caption, "
                                         f"e.g. {', '.join(missing[:3])}")
    return [captions[i] for i in image_ids]


def strict_json_loads(text: str | bytes):
    """`json.loads` that refuses what Python's accepts but JSON does not mean: NaN/Infinity, numbers that
    overflow to infinity (1e400), repeated keys in one object; and nesting too deep to parse. Raises
    ValueError with a one-line reason."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant,
                          parse_float=_finite_float)
    except json.JSONDecodeError as err:
        raise ValueError(f"{err.msg} at line {err.lineno}, column {err.colno}") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {_short(key)} appears twice in one object")
        out[key] = value
    return out


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{_short(text)} is out of range for a number")
    return value


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"
