"""Tables for the terminal that never truncate a name, a preset or a number.

rich shortens every column of a table wider than the terminal (`bahdan…`), and a pipe counts as 80 columns.
Here each column says whether it is essential (names, presets, numbers: never wrapped or cut) or descriptive
(free text: wraps). When even that does not fit, optional columns are dropped, the last first, and the table
says which. `attnrepro list --json` is the form for scripts.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

_PER_COLUMN = 3  # rich's padding and border per column


@dataclass(frozen=True)
class Col:
    header: str
    kind: str = "key"  # key: never wrapped or cut; number: the same, right-aligned; text: wraps
    optional: bool = False  # may be dropped when the terminal is too narrow

    @property
    def wraps(self) -> bool:
        return self.kind == "text"


def _width(col: Col, cells: list[str]) -> int:
    if col.wraps:  # text wraps between words, never inside one
        return max([len(col.header)] + [len(word) for c in cells for word in c.split()])
    return max([len(col.header)] + [len(c) for c in cells])


def print_table(console: Console, title: str, columns: list[Col], rows: list[list[str]]) -> None:
    keep = list(range(len(columns)))
    widths = [_width(c, [r[i] for r in rows]) for i, c in enumerate(columns)]
    dropped = []
    while sum(widths[i] + _PER_COLUMN for i in keep) + 1 > console.width:
        optional = [i for i in keep if columns[i].optional]
        if not optional:
            break  # nothing left to drop: let the terminal wrap the lines rather than cut a value
        keep.remove(optional[-1])
        dropped.append(columns[optional[-1]].header)
    table = Table(title=title)
    for i in keep:
        col = columns[i]
        table.add_column(col.header, justify="right" if col.kind == "number" else "left",
                         no_wrap=not col.wraps, min_width=widths[i], overflow="fold")
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    needed = sum(widths[i] + _PER_COLUMN for i in keep) + 1
    console.print(table, width=max(console.width, needed), crop=False)
    if dropped:
        console.print(f"[dim]({', '.join(reversed(dropped))} left out for this terminal's width)[/dim]")
