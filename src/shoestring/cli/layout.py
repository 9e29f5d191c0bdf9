"""Tables that fit the terminal: wrapped at word boundaries, or stacked, never cut.

rich shrinks a table that is wider than the console by narrowing its widest
columns and cutting what no longer fits with an ellipsis: run names, paths
and metric values lost their ends at 80 and even 120 columns. Here a table
is printed only when every column can keep its longest word whole (values
such as ``6.3 h`` and ``0.0025`` whole too); the spare width goes to the
columns that wrap. When even that does not fit, each row is printed as a
block (its heading, then ``header: value`` pairs packed into lines), so
names, values and paths are shown in full at any width.

Every function takes the :class:`~rich.console.Console` to print on, so the
same rendering works whatever parses the command line.

>>> import io
>>> from rich.console import Console
>>> c = Console(width=32, file=io.StringIO())
>>> print_table(c, "runs", [Column("name"), Column("status"), Column("folder")],
...             [["mlp-1", "finished", "runs/mlp-1"], ["gpt-2", "killed", "runs/gpt-2/a/long/path"]])
>>> print(c.file.getvalue(), end="")
runs
mlp-1
  status: finished
  folder: runs/mlp-1
gpt-2
  status: killed
  folder: runs/gpt-2/a/long/path
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

PAD = 1       # cell padding each side (rich's default (0, 1))
INDENT = 2    # stacked rows: their fields are indented under the heading
SEP = "   "   # stacked rows: between fields packed on one line


@dataclass(frozen=True)
class Column:
    """One column: its header, alignment, and whether its cells may wrap.

    ``wrap=False`` keeps a cell on one line (numbers with units, ids, dates):
    the column is then at least as wide as its widest cell. ``label`` names
    the field in stacked rows (default: the header).
    """

    header: str
    justify: Literal["left", "right"] = "left"
    wrap: bool = True
    label: str | None = None


def print_table(console: Console, title: str, columns: Sequence[Column],
                rows: Sequence[Sequence[str]], *, caption: str | None = None,
                heading: Sequence[int] = (0,),
                groups: Sequence[Sequence[int]] | None = None) -> None:
    """Print ``rows`` as a table if it fits ``console`` uncut, else stacked.

    ``heading``: the columns that name a row when stacked (joined by ' · ');
    ``groups``: the columns that start a line together when stacked (see
    :func:`print_stacked`).
    """
    cells = [[Text(str(v)) for v in row] for row in rows]
    widths = column_widths([_measure(console, col, [r[i] for r in cells])
                            for i, col in enumerate(columns)],
                           console.width - _overhead(len(columns)))
    if widths is None:
        print_stacked(console, title, columns, rows, caption=caption, heading=heading,
                      groups=groups)
        return
    table = Table(title=title, caption=caption)
    for col, width in zip(columns, widths):
        table.add_column(col.header, justify=col.justify, width=width, overflow="fold",
                         no_wrap=not col.wrap)
    for row in cells:
        table.add_row(*row)
    console.print(table)


def print_stacked(console: Console, title: str, columns: Sequence[Column],
                  rows: Sequence[Sequence[str]], *, caption: str | None = None,
                  heading: Sequence[int] = (0,),
                  groups: Sequence[Sequence[int]] | None = None) -> None:
    """Each row as a block: a bold heading, then its non-empty fields.

    Fields are packed into lines of the console's width, each of ``groups``
    (column indexes; default: all but the heading) from a new line, so every
    row's block has the same shape. A field wider than a line gets lines of
    its own, cut into line-wide pieces (nothing dropped).
    """
    width = max(console.width - INDENT, 8)
    console.print(Text(title, style="bold"), soft_wrap=False)
    for row in rows:
        head = " · ".join(str(row[i]) for i in heading if str(row[i]))
        for piece in _pieces(Text(head, style="bold"), console.width):
            console.print(piece, no_wrap=True, soft_wrap=False)
        for group in groups or [[i for i in range(len(columns)) if i not in heading]]:
            fields = [(columns[i].label or columns[i].header, str(row[i])) for i in group
                      if str(row[i])]
            for line in pack([f"{h}: {v}" for h, v in fields], width):
                text = Text(" " * INDENT)
                for n, (h, v) in enumerate(fields[i] for i in line):
                    text.append(SEP if n else "")
                    text.append(f"{h}: ", style="dim")
                    text.append(v)
                for piece in _pieces(text, console.width, indent=INDENT):
                    console.print(piece, no_wrap=True, soft_wrap=False)
    if caption:
        console.print(Text(caption, style="dim"), soft_wrap=False)


def _pieces(text: Text, width: int, indent: int = 0) -> list[Text]:
    """``text`` in lines of at most ``width`` cells, continuations indented.

    A line breaks at its last space past its middle (prose), else after its
    last '/' past its middle (a path), else at the width (a long name).
    """
    pieces: list[Text] = []
    while text.cell_len > width:
        space = text.plain.rfind(" ", 0, width + 1)
        slash = text.plain.rfind("/", 0, width)
        cut, skip = (space, 1) if space > width // 2 else \
            (slash + 1, 0) if slash + 1 > width // 2 else (width, 0)
        pieces.append(text[:cut])
        text = Text(" " * indent) + text[cut + skip:]
    return pieces + [text]


def pack(items: Sequence[str], width: int, sep: str = SEP) -> list[list[int]]:
    """Greedy line packing: the indexes of ``items`` on each line, in order.

    >>> pack(["aaaa", "bb", "cccccccc", "d"], 10, sep=" ")
    [[0, 1], [2, 3]]
    >>> pack(["a" * 20, "b"], 10)
    [[0], [1]]
    """
    lines: list[list[int]] = []
    used = 0
    for i, item in enumerate(items):
        if lines and used + len(sep) + len(item) <= width:
            lines[-1].append(i)
            used += len(sep) + len(item)
        else:
            lines.append([i])
            used = len(item)
    return lines


def column_widths(ranges: Sequence[tuple[int, int]], available: int) -> list[int] | None:
    """Content widths for columns of (minimum, maximum) width, or None if they cannot fit.

    Every column gets its minimum (its longest unbreakable word); the space
    left is shared in proportion to what each column could still use, so a
    long wrapping column takes more of it than a short one.

    >>> column_widths([(3, 5), (4, 4)], 20)
    [5, 4]
    >>> column_widths([(3, 13), (4, 4), (2, 7)], 14)
    [7, 4, 3]
    >>> column_widths([(10, 10), (10, 12)], 15) is None
    True
    """
    lows = [lo for lo, _ in ranges]
    highs = [max(lo, hi) for lo, hi in ranges]
    if sum(highs) <= available:
        return highs
    spare = available - sum(lows)
    if spare < 0:
        return None
    room = [hi - lo for lo, hi in zip(lows, highs)]
    total = sum(room)
    widths = [lo + spare * r // total for lo, r in zip(lows, room)]
    left = available - sum(widths)
    for i in sorted(range(len(widths)), key=lambda i: widths[i] - highs[i]):
        if left <= 0:
            break
        if widths[i] < highs[i]:
            widths[i] += 1
            left -= 1
    return widths


def _measure(console: Console, column: Column, cells: Sequence[Text]) -> tuple[int, int]:
    """(minimum, maximum) content width of a column, its header included."""
    lo = hi = 0
    for cell in [Text(column.header), *cells]:
        m = Measurement.get(console, console.options, cell)
        hi = max(hi, m.maximum)
        lo = max(lo, m.maximum if not column.wrap else m.minimum)
    return lo, hi


def _overhead(n_columns: int) -> int:
    """Borders and padding of a boxed rich table: one rule per column and one more."""
    return n_columns * (2 * PAD + 1) + 1


__all__ = ["Column", "column_widths", "pack", "print_stacked", "print_table"]
