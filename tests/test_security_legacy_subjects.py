"""Migration 22 keeps "you" for customers' own preference changes recorded under the old
session subject, uuid5(NAMESPACE_URL, 'tel:' + phone): they are mapped to the number's
random subject, and the undo maps them back."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from db.install.migrations import discover, migrate
from db.install.undo import number, rollback
from tests.install_helpers import database
from tests.pg import as_role, connect

ANA, BEN = "+17135550101", "+17135550102"


def _legacy(phone: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "tel:" + phone))


def test_old_subjects_of_customers_changes_still_read_you(pg_cluster, tmp_path: Path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    files = discover()
    with database(pg_cluster, "vanilla") as db:
        for f in files:
            if number(f.filename) < 22:
                shutil.copy(f.path, folder / f.filename)
        migrate(db.owner_url, folder)
        with connect(db.owner_url) as c:
            ana = c.execute("INSERT INTO registrations (customer_name, customer_phone) VALUES "
                            "('Ana', %s) RETURNING id", (ANA,)).fetchone()["id"]
            ben = c.execute("INSERT INTO registrations (customer_name, customer_phone) VALUES "
                            "('Ben', %s) RETURNING id", (BEN,)).fetchone()["id"]
            for reg, who in ((ana, _legacy(ANA)), (ana, _legacy(BEN)), (ben, _legacy(BEN))):
                c.execute("INSERT INTO notification_pref_changes (registration_id, old_pref, "
                          "new_pref, changed_by_kind, changed_by) VALUES "
                          "(%s, 'both', 'sms', 'customer', %s)", (reg, who))
        migrate(db.owner_url)
        migrate(db.owner_url)  # twice: nothing more to map
        with connect(db.owner_url) as c:
            subject = c.execute("SELECT subject::text AS s FROM customer_subjects "
                                "WHERE phone = %s", (ANA,)).fetchone()["s"]
            kept = [r["changed_by"] for r in c.execute(
                "SELECT changed_by FROM notification_pref_changes ORDER BY id")]
        assert _legacy(ANA) not in kept and subject in kept
        claims = {"sub": subject, "role": "authenticated", "phone": ANA.lstrip("+"),
                  "iss": "regnotify"}
        with as_role(db.owner_url, "authenticated", claims) as c:
            doc = c.execute("SELECT notification_timeline(%s) AS d", (ana,)).fetchone()["d"]
        changes = [(e["changed_by"], e["changed_by_label"]) for e in doc["events"]
                   if e["kind"] == "preference_change"]
        # Ana's own change is "you"; Ben's (he held a number on Ana's record) is not
        # hers, and she sees no id of his.
        assert changes == [("you", "you"), (None, "the dealership")]
        rollback(db.owner_url, 21, drop_data=True)
        with connect(db.owner_url) as c:
            back = [r["changed_by"] for r in c.execute(
                "SELECT changed_by FROM notification_pref_changes ORDER BY id")]
        assert back == [_legacy(ANA), _legacy(BEN), _legacy(BEN)]
