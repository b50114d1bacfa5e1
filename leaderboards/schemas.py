"""What a client may send besides its outputs: a submission's metadata and an owner's later changes.

Strict by design: JSON is parsed with `strict_json_loads` (no NaN/Infinity, no 1e400, no repeated keys),
every pattern must match the whole value, no string anywhere (keys included) may hold NUL or anything that
is not encodable as UTF-8 (a lone surrogate such as "\\ud800", which JSON's escapes can spell and no database
or page can hold), and text shown on pages follows
a Unicode policy: display names are one line of visible characters (no control, format, bidi-override,
line- or paragraph-separator, private-use or unassigned characters); notes may also hold newlines and
tabs, nothing else of those classes."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from reproductions.common.submissions import strict_json_loads

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
KEY_RE = re.compile(r"[\x21-\x7e]{1,200}")  # Idempotency-Key: printable ASCII, no spaces
COMMIT_RE = re.compile(r"[0-9a-f]{7,40}")
URL_RE = re.compile(r"https?://[^\s<>\"'`\x00-\x1f\x7f]+")
MAX_ID = 2**31 - 1  # ids are INTEGER columns (32-bit on PostgreSQL)
HIDDEN = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}  # controls, format (bidi, zero-width), separators, ...


class InvalidBody(ValueError):
    """A request body that is not what the route takes; the message says what is wrong."""


def unencodable(text: str) -> str | None:
    """Why `text` cannot be stored or shown (a lone surrogate: not valid Unicode), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return (f"holds U+{ord(text[err.start]):04X} at character {err.start}, a lone surrogate that is not valid "
                "Unicode; send text that encodes as UTF-8")
    return None


class StrictModel(BaseModel):
    """Every string of the model, however deep, encodes as UTF-8 (also when validated without parse_body)."""
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, value):
        _check_values(value, "", check_depth=False)
        return value


def _display_name(text: str) -> str:
    bad = next((c for c in text if unicodedata.category(c) in HIDDEN), None)
    if bad is not None:
        raise ValueError(f"must be one line of visible characters (it holds U+{ord(bad):04X}, "
                         f"{unicodedata.name(bad, 'a control character')})")
    if text != text.strip():
        raise ValueError("must not start or end with spaces")
    return text


def _free_text(text: str) -> str:
    bad = next((c for c in text if c not in "\n\t" and unicodedata.category(c) in HIDDEN), None)
    if bad is not None:
        raise ValueError(f"may hold newlines and tabs but no other invisible characters (it holds U+{ord(bad):04X})")
    return text


def _http_url(url: str) -> str:
    if not URL_RE.fullmatch(url):
        raise ValueError("must be an http(s) URL such as https://wandb.ai/ENTITY/PROJECT/runs/ID")
    return url


def _name(value: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise ValueError("must be a lower-case name like bahdanau2014 or xu2015-hard")
    return value


def _commit(value: str) -> str:
    if not COMMIT_RE.fullmatch(value):
        raise ValueError("must be a git commit hash (7 to 40 lower-case hex digits)")
    return value


ModelName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_display_name)]
Link = Annotated[str, Field(max_length=500), AfterValidator(_http_url)]
Notes = Annotated[str, Field(max_length=2000), AfterValidator(_free_text)]
Name = Annotated[str, AfterValidator(_name)]


class Metadata(StrictModel):
    """What the client says about a run. Scores it claims are kept for display and never used."""

    model: ModelName
    reproduction: Name | None = None
    preset: Name | None = None
    config: dict[str, Any] | None = None
    commit: Annotated[str, AfterValidator(_commit)] | None = None
    dirty: bool | None = None
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    wandb_url: Link | None = None
    compute: dict[str, Any] | None = None
    claimed_scores: dict[Annotated[str, Field(max_length=64)], float] | None = None
    notes: Notes | None = None


class Changes(StrictModel):
    """What an owner may change after submitting (PATCH): a new model name; a W&B link or notes, or null."""

    model: ModelName | None = None
    wandb_url: Link | None = None
    notes: Notes | None = None

    @field_validator("model")
    @classmethod
    def _keep_a_name(cls, value):
        if value is None:
            raise ValueError("a submission keeps a model name; send a new one instead of null")
        return value


def parse_body(model: type[BaseModel], data: str | bytes, what: str) -> BaseModel:
    """`data` (JSON) as `model`, strictly; raises InvalidBody naming `what` and every problem."""
    try:
        value = strict_json_loads(data)
    except ValueError as err:
        raise InvalidBody(f"{what}: not valid JSON ({err})") from None
    _check_values(value, what)
    try:
        return model.model_validate(value)
    except ValidationError as err:
        raise InvalidBody(f"{what}: " + "; ".join(describe(e) for e in err.errors())) from None


def describe(error: dict) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body",))
    message = error.get("msg", "invalid").removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


MAX_DEPTH = 32  # config and compute are small mappings; deeper nesting is refused, not stored


def _check_values(value, where: str, depth: int = 0, check_depth: bool = True) -> None:
    """No NUL and nothing unencodable in any string or key, and nesting at most MAX_DEPTH levels deep."""
    if check_depth and depth > MAX_DEPTH:
        raise InvalidBody(f"{where}: nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidBody(f"{where}: a NUL character (not allowed anywhere)")
        if (why := unencodable(value)) is not None:
            raise InvalidBody(f"{where}: {why}")
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{where}.{_shown_key(key)}" if where else _shown_key(key)
            _check_values(key, inner, depth + 1, check_depth)
            _check_values(item, inner, depth + 1, check_depth)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_values(item, f"{where}[{i}]", depth + 1, check_depth)


def _shown_key(key) -> str:
    """A key as the messages name it: its first 40 characters, with anything unencodable escaped."""
    return str(key)[:40].encode("utf-8", "backslashreplace").decode("utf-8")
