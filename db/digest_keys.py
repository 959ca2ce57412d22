"""The Idempotency-Key each staff reply digest first went to Resend under (migration 23)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from db.queries import query


def keys(conn: Connection, ids: Sequence[int]) -> dict[int, tuple[str | None, list[int]]]:
    """{digest id: (its key or None, the digests still sending under that key)}."""
    rows = conn.exec_driver_sql(query("reply_digest_keys"), {"ids": list(ids)}).all()
    return {int(r.id): (r.idempotency_key, [int(i) for i in r.companions]) for r in rows}


def attempt(conn: Connection, ids: Sequence[int], *, token: str, key: str,
            lease_s: float) -> dict[int, int]:
    """Count an attempt of this claim's digests under `key`, leased afresh: {id: attempts}.

    A digest missing from the answer is no longer this claim's: not to be sent.
    """
    rows = conn.exec_driver_sql(query("reply_digests_attempt_keyed"), {
        "ids": list(ids), "token": token, "key": key, "lease_s": lease_s}).all()
    return {int(r.id): int(r.attempts) for r in rows}
