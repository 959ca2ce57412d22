"""The preference-change lines of `regnotify status REG_ID`.

Kept apart from the timeline's queue and delivery rendering: it reads one
audit table of its own (migration 12) and prints one line per change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

# One zone for every time of `status` (the machine's, named), not the database session's.
from tasks.cli.printing import when

if TYPE_CHECKING:
    from rich.console import Console

    from db.status import DeliveryEntry, PrefChange

#: How the timeline names each kind of author.
KIND_LABELS = {
    "customer": "the customer",
    "staff": "staff",
    "service": "the backend (service_role)",
    "database": "a direct database connection",
}


def describe(change: PrefChange) -> str:
    """`2026-01-02 10:00:00 UTC  both -> email  by the customer (user-123)`."""
    who = KIND_LABELS.get(change.changed_by_kind, change.changed_by_kind)
    if change.changed_by:
        who += f" ({change.changed_by})"
    old = change.old_pref or "(unset)"
    return f"{when(change.changed_at)}  {old} -> {change.new_pref}  by {who}"


def preference_changed_while_waiting(d: DeliveryEntry) -> str:
    """'the customer changed the preference both -> none at ... while it waited', or ''.

    For a delivery skipped for its preference after it was written: the
    customer (or staff) changed their mind before it went.
    """
    if d.pref_changed_at is None:
        return ""
    who = KIND_LABELS.get(d.pref_changed_by_kind or "", d.pref_changed_by_kind or "someone")
    old = d.pref_changed_from or "(unset)"
    return (f"{who} changed the preference {old} -> {d.pref_changed_to} at "
            f"{when(d.pref_changed_at)} while it waited; not sent")


def pref_changes_json(changes: Sequence[PrefChange]) -> list[dict[str, Any]]:
    """The changes as JSON-ready dicts."""
    return [asdict(c) for c in changes]


def print_pref_changes(out: Console, changes: Sequence[PrefChange]) -> None:
    """A 'Preference changes' block, or nothing when the preference never changed."""
    from rich.text import Text

    if not changes:
        return
    out.print("Preference changes:")
    for change in changes:
        out.print(Text("  " + describe(change)))
    out.print()
