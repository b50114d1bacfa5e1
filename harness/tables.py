"""Tables for the terminal that never truncate a name, a preset or a number: every table the project prints (the
CLI, the benchmarks, the sweep) goes through `print_table` (or `print_records`, for rows that are dicts, or
`live_table`, for a table that rich's Live redraws in place); no other module builds a rich Table.

rich shortens every column of a table wider than the terminal (`bahdan…`), and a pipe counts as 80 columns.
Here each column says whether it is essential (names, presets, numbers: never wrapped or cut) or descriptive
(free text: wraps between words, never inside one). When even that does not fit, optional columns are dropped,
the last first, and the table says which; when nothing is left to drop, the table is printed wider than the
terminal (which then wraps the lines) rather than cut. `--json` is the form for scripts.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segments
from rich.table import Table
from rich.text import Text

_PER_COLUMN = 3  # rich's padding (one space each side) and one border per column


class _Console(Console):
    def on_broken_pipe(self) -> None:
        raise BrokenPipeError  # rich's own way is SystemExit(1); the CLI's main ends a closed pipe quietly with 141


def console(stderr: bool = False) -> Console:
    """The console the CLI prints through (stdout, or stderr where stdout holds JSON)."""
    return _Console(stderr=stderr)


@dataclass(frozen=True)
class Col:
    header: str
    kind: str = "key"  # key: never wrapped or cut; number: the same, right-aligned; text: wraps
    optional: bool = False  # may be dropped when the terminal is too narrow

    @property
    def wraps(self) -> bool:
        return self.kind == "text"


def _plain(cell: str) -> str:
    """The text a cell shows: rich reads markup in cells (`[green]done[/]`), which takes no room."""
    return Text.from_markup(cell).plain if "[" in cell else cell


def _width(col: Col, cells: list[str]) -> int:
    """The least width the column takes: a text column wraps between words, never inside one."""
    if col.wraps:
        return max([cell_len(col.header)] + [cell_len(word) for c in cells for word in c.split()])
    return max([cell_len(col.header)] + [cell_len(c) for c in cells])


def _fit_text(natural: list[int], least: list[int], room: int) -> list[int]:
    """Widths of the text columns: their natural widths when they fit in `room`, else the widest are narrowed to
    one common cap, never below their longest word."""
    cap = max(natural, default=0)
    while cap > 0 and sum(max(lo, min(n, cap)) for n, lo in zip(natural, least)) > room:
        cap -= 1
    return [max(lo, min(n, cap)) for n, lo in zip(natural, least)]


@dataclass(frozen=True)
class _Layout:
    keep: list[int]  # the columns shown
    widths: dict[int, int]  # each shown column's width
    total: int  # the table's width: the terminal's, or more when its essential columns need more
    dropped: list[str]  # headers of the optional columns left out, in the table's order
    folds: bool = False  # the essential columns break inside their values, onto next lines (`fold`)


def _layout(width: int, columns: list[Col], rows: list[list[str]], fold: bool = False) -> _Layout:
    """`fold`: where even the essential columns do not fit, narrow the widest of them to the width (never below
    their headers) and let their values break onto next lines, instead of printing a table wider than the
    terminal; no value is cut either way. For rich's Live, which cannot draw lines wider than the terminal."""
    plain = [[_plain(c) for c in row] for row in rows]
    keep = list(range(len(columns)))
    widths = [_width(c, [r[i] for r in plain]) for i, c in enumerate(columns)]

    def needed() -> int:
        return sum(widths[i] + _PER_COLUMN for i in keep) + 1

    dropped = []
    while needed() > width:
        optional = [i for i in keep if columns[i].optional]
        if not optional:
            break  # nothing left to drop: wider than the terminal rather than cut a value
        keep.remove(optional[-1])
        dropped.append(columns[optional[-1]].header)
    # Every column gets its width here, so that rich never has to narrow one (it would cut the essential ones).
    total = max(width, needed())
    text = [i for i in keep if columns[i].wraps]
    room = total - (needed() - sum(widths[i] for i in text))
    natural = [max([cell_len(columns[i].header)] + [cell_len(r[i]) for r in plain]) for i in text]
    for i, fitted in zip(text, _fit_text(natural, [widths[i] for i in text], room)):
        widths[i] = fitted
    folds = fold and total > width
    if folds:  # the text columns are at their longest words already: narrow the others
        essential = [i for i in keep if not columns[i].wraps]
        room = width - (needed() - sum(widths[i] for i in essential))
        least = [cell_len(columns[i].header) for i in essential]
        for i, fitted in zip(essential, _fit_text([widths[i] for i in essential], least, room)):
            widths[i] = fitted
        total = max(width, needed())
    return _Layout(keep, {i: widths[i] for i in keep}, total, list(reversed(dropped)), folds)


def _build(title: str, columns: list[Col], rows: list[list[str]], layout: _Layout) -> Table:
    table = Table(title=title)
    for i in layout.keep:
        col = columns[i]
        table.add_column(col.header, justify="right" if col.kind == "number" else "left",
                         no_wrap=not (layout.folds or col.wraps), width=layout.widths[i], overflow="fold")
    for row in rows:
        table.add_row(*(row[i] for i in layout.keep))
    return table


def _dropped_note(layout: _Layout) -> str:
    return f"[dim]({', '.join(layout.dropped)} left out for this terminal's width)[/dim]"


def print_table(console: Console, title: str, columns: list[Col], rows: list[list[str]]) -> None:
    layout = _layout(console.width, columns, rows)
    table = _build(title, columns, rows, layout)
    # console.print(width=...) never goes past the console's width, so render at the width the table needs
    console.print(Segments(console.render(table, console.options.update_width(layout.total))), crop=False)
    if layout.dropped:
        console.print(_dropped_note(layout))


class _FittedTable:
    """A table laid out by print_table's rules at the width it is drawn at (a terminal's, again at each redraw of
    rich's Live). Where even the essential columns do not fit, their values fold onto next lines instead of
    running past the terminal's edge, which Live would cut."""

    def __init__(self, title: str, columns: list[Col], rows: list[list[str]]):
        self.title, self.columns, self.rows = title, columns, rows

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        layout = _layout(options.max_width, self.columns, self.rows, fold=True)
        table = _build(self.title, self.columns, self.rows, layout)
        if layout.dropped:
            table.caption = _dropped_note(layout)
        yield table


def live_table(title: str, columns: list[Col], rows: list[list[str]]) -> _FittedTable:
    """The renderable for rich's Live (a table redrawn in place in a terminal): the columns and rows of print_table,
    never cut. In a log or a pipe, print plain lines or print_table instead."""
    return _FittedTable(title, columns, rows)


def print_records(console: Console, title: str, records: list[dict]) -> None:
    """Rows that are dicts with the same keys (an admin listing): a column per key. A column whose values hold
    spaces wraps between words; any other is a name, an id or a number and is never wrapped or cut."""
    if not records:
        console.print(f"{title}: none")
        return
    headers = list(records[0])
    rows = [["" if r.get(h) is None else str(r.get(h)) for h in headers] for r in records]
    columns = [Col(h, "text" if any(" " in row[i] for row in rows) else "key") for i, h in enumerate(headers)]
    print_table(console, title, columns, rows)
