"""The reference of every config key, generated from the typed configs themselves.

Each key's type and default come from its dataclass field; its meaning is the comment the source gives it: the
trailing `# ...` on the field's line, else the comment lines right above the field. The config class of each
reproduction is the registry's (`Reproduction.config_class`). `attnrepro config --list [NAME]` prints it and
docs/config.md is this module's Markdown (tests/test_config_reference.py checks that the file is up to date and
that every key of every config dataclass is listed):

    python -m harness.config_reference > docs/config.md

Importing this module imports no torch; listing a config class imports its module (and so torch).
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import re
import tokenize
from dataclasses import dataclass

DOC_HEADER = """# Config reference

Every key of every typed config, with its type, its default and what it means. Generated from the config
dataclasses by `python -m harness.config_reference > docs/config.md` (also `attnrepro config --list [NAME]`);
`tests/test_config_reference.py` fails when this file is out of date. A default is the dataclass's: a preset
(`reproductions/NAME/configs/PRESET.yaml`) sets most keys again, and `attnrepro train NAME --preset P
--print-config` prints the resolved values. Change any key with `--set SECTION.KEY=VALUE`; an unknown key or a
value of the wrong type is an error that names the key.
"""


@dataclass
class Key:
    key: str  # dotted, e.g. train.max_steps
    type: str
    default: str
    meaning: str
    defined_in: str  # module:Class of the dataclass that declares the field


def _comments(cls) -> dict[str, str]:
    """field name -> its comment in the source of `cls` (trailing, else the comment block right above it)."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    trailing: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            trailing[tok.start[0]] = tok.string.lstrip("#").strip()
    found = {}
    field_line = re.compile(r"^    (\w+)\s*:")
    for number, line in enumerate(lines, start=1):
        match = field_line.match(line)
        if not match:
            continue
        name = match.group(1)
        text = trailing.get(number) if not line.lstrip().startswith("#") else None
        above, n = [], number - 1
        while n >= 1 and lines[n - 1].strip().startswith("#"):
            above.insert(0, lines[n - 1].strip().lstrip("#").strip())
            n -= 1
        if not text and above:
            text = " ".join(above)
        elif text and above and text.startswith("..."):  # a comment continued from the line above
            text = " ".join(above) + " " + text
        found[name] = (text or "").strip()
    return found


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "(required)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def _declaring(cls, name: str):
    for klass in cls.__mro__:
        if name in getattr(klass, "__annotations__", {}):
            return klass
    return cls


def keys(config_class) -> list[Key]:
    """Every key of `config_class`, sections expanded (a field whose default is a dataclass is a section)."""
    out: list[Key] = []

    def walk(cls, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            if f.name.startswith("_"):
                continue
            sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None
            if isinstance(sub, type) and dataclasses.is_dataclass(sub):
                walk(sub, f"{prefix}{f.name}.")
                continue
            owner = _declaring(cls, f.name)
            out.append(Key(f"{prefix}{f.name}", str(f.type), _default(f), _comments(owner).get(f.name, ""),
                           f"{owner.__module__}:{owner.__qualname__}"))

    walk(config_class, "")
    return out


def config_classes() -> dict[str, list[str]]:
    """module:Class of each registry config class -> the reproductions that use it (registry order)."""
    from reproductions import registry

    classes: dict[str, list[str]] = {}
    for repro in registry.REPRODUCTIONS.values():
        classes.setdefault(repro.config_class, []).append(repro.name)
    return classes


def resolve(dotted: str):
    from reproductions.registry import _resolve

    return _resolve(dotted)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown() -> str:
    """docs/config.md: one table per config class of the registry."""
    parts = [DOC_HEADER]
    for dotted, names in config_classes().items():
        parts.append(f"## `{dotted}`\n")
        parts.append("Used by: " + ", ".join(f"`{n}`" for n in names) + ".\n")
        parts.append("| key | type | default | meaning |")
        parts.append("|---|---|---|---|")
        for k in keys(resolve(dotted)):
            parts.append(f"| `{k.key}` | `{_cell(k.type)}` | `{_cell(k.default)}` | {_cell(k.meaning) or '-'} |")
        parts.append("")
    return "\n".join(parts)


def as_json(name: str | None = None) -> list[dict]:
    from reproductions import registry

    chosen = [registry.get(name)] if name else list(registry.REPRODUCTIONS.values())
    seen, out = set(), []
    for repro in chosen:
        if repro.config_class in seen:
            continue
        seen.add(repro.config_class)
        out.append({"config_class": repro.config_class, "used_by": config_classes()[repro.config_class],
                    "keys": [dataclasses.asdict(k) for k in keys(resolve(repro.config_class))]})
    return out


if __name__ == "__main__":
    print(markdown(), end="")
