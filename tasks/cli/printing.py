"""How `status` and `retry-failed` print: rich tables that never cut an id,
JSON with ISO times, local timestamps and durations, masked error text."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tasks.masking import mask_text

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text


def jsonable(value: Any) -> Any:
    """`json.dumps` default: ISO 8601 for times."""
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def print_json(document: dict[str, Any]) -> None:
    """One JSON document on stdout."""
    print(json.dumps(document, indent=2, default=jsonable))


#: Width for output that is not a terminal (a file, a pipe): wide enough that
#: no table wraps or turns into blocks; COLUMNS, when set, still wins.
PIPED_WIDTH = 400


def console() -> Console:
    """A console on the current stdout (tests swap it); data is never read as markup.

    Piped to a file, rich would assume 80 columns and wrap every table.
    """
    import os

    from rich.console import Console

    width = None
    if not sys.stdout.isatty() and not os.environ.get("COLUMNS"):
        width = PIPED_WIDTH
    return Console(file=sys.stdout, highlight=False, width=width)


def text(value: Any) -> Text:
    """A table cell holding data verbatim: a '[' in an error message is not rich markup."""
    from rich.text import Text

    return Text("" if value is None else str(value))


#: Columns of free text: they wrap to fit. Every other column (ids, addresses,
#: times, counts) stays on one line so it can be copied whole.
_WRAPPING = frozenset({"customer", "detail", "error", "last error"})

#: Narrowest a wrapping column gets before a table no longer fits.
_WRAP_MIN = 24


def print_rows(
    out: Console, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str = ""
) -> None:
    """Rows as a table when the terminal fits its one-line columns, else one block per row.

    A table squeezed below its ids' width would cut them ('SM9135bc…'); the
    block layout (label, value) never cuts anything at any width.
    """
    from rich.cells import cell_len
    from rich.table import Table

    cells = [["" if v is None else str(v) for v in row] for row in rows]
    needed = 1
    for i, name in enumerate(columns):
        longest = max([cell_len(name), *(cell_len(row[i]) for row in cells)])
        needed += 3 + (min(longest, _WRAP_MIN) if name in _WRAPPING else longest)
    if needed <= out.width:
        table = Table(title=title or None, title_justify="left")
        for name in columns:
            if name in _WRAPPING:
                table.add_column(name, overflow="fold")
            else:
                table.add_column(name, no_wrap=True)
        for row in cells:
            table.add_row(*(text(v) for v in row))
        out.print(table)
        return
    if title:
        out.print(text(title))
    for row in cells:
        block = Table.grid(padding=(0, 2))
        block.add_column(no_wrap=True, style="bold")
        block.add_column(overflow="fold")
        for name, value in zip(columns, row, strict=True):
            if value:
                block.add_row(text(name), text(value))
        out.print(block)
        out.print()


def when(value: datetime | None) -> str:
    """A timestamp in local time, to the second, with its zone: `2026-01-02 10:00:00 UTC`.

    The zone is always said: a line may also carry a customer's local time
    (`held ... until 08:00 America/Chicago`), and a bare time beside it reads
    as the same zone.
    """
    if value is None:
        return ""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def duration(seconds: float | None) -> str:
    """'45s', '3m 05s', '2h 10m', '3d 4h'."""
    if seconds is None:
        return ""
    s = round(abs(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def relative(value: datetime | None, now: datetime) -> str:
    """'3m 05s ago' or 'in 2m 00s'."""
    if value is None:
        return ""
    delta = (value - now).total_seconds()
    return f"in {duration(delta)}" if delta > 0 else f"{duration(delta)} ago"


def describe_error(code: str | None, message: str | None) -> str:
    """'code: message' with phone numbers masked, or whichever of the two there is."""
    message = mask_text(message)
    if code and message:
        return f"{code}: {message}"
    return code or message or ""
