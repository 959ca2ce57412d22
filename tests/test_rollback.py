"""`regnotify migrate --to NN`: back one file at a time, newest first, and forward again.

For every migration number that exists (other developers' files included):
migrate, migrate --to NN, migrate again gives the same schema as a straight
migrate (pg_dump --schema-only, grants, default privileges, policies, roles),
on the vanilla, Supabase-like and plain-owner databases; the queue and the
delivery history survive where no --drop-data was needed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from db.errors import MigrationError
from db.install.catalog_snapshot import snapshot
from db.install.migrations import discover, migrate, status
from db.install.undo import down_dir, number, plan, rollback, undo_file
from db.sql_files import migrations_dir
from tasks.cli.main import main
from tests.install_helpers import (
    KINDS,
    catalog_state,
    database,
    first_difference,
    schema_state,
    seed_rows,
    seed_tables,
)
from tests.pg import connect


def _add_history(url: str, n: int) -> None:
    """One registration with a closed burst, its delivery, and a pending burst."""
    with connect(url) as c:
        reg = c.execute("INSERT INTO registrations (customer_name, customer_phone) "
                        "VALUES (%s, %s) RETURNING id",
                        (f"Round Trip {n}", f"+1555888{n:04d}")).fetchone()["id"]
        c.execute("UPDATE registrations SET current_stage = 'documents_collected' "
                  "WHERE id = %s", (reg,))
        q = c.execute("UPDATE notification_queue SET sent = true, processed_at = now(), "
                      "closed_reason = 'processed' WHERE registration_id = %s RETURNING id",
                      (reg,)).fetchone()["id"]
        c.execute("INSERT INTO registration_notifications (registration_id, queue_id, channel, "
                  "recipient, status, attempts) VALUES (%s, %s, 'sms', %s, 'delivered', 1)",
                  (reg, q, f"+1555888{n:04d}"))
        c.execute("UPDATE registrations SET current_stage = 'submitted_to_dmv' WHERE id = %s",
                  (reg,))


def _rows(url: str, table: str, columns: str = "*") -> list[dict]:
    with connect(url) as c:
        if c.execute("SELECT to_regclass(%s) IS NULL AS gone", (table,)).fetchone()["gone"]:
            return []
        return c.execute(f"SELECT {columns} FROM {table} ORDER BY id").fetchall()


def _applied(url: str) -> list[int]:
    return [number(s.filename) for s in status(url) if s.status == "applied"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_migration_steps_back_and_forward_to_the_same_schema(pg_cluster, kind):
    numbers = sorted(number(f.filename) for f in discover())
    with database(pg_cluster, kind) as ref:
        migrate(ref.owner_url)
        straight = schema_state(ref)
        straight_catalog = catalog_state(ref)
    with database(pg_cluster, kind) as db:
        migrate(db.owner_url)
        for nn in [*reversed(numbers[:-1]), 0]:
            _add_history(db.owner_url, nn)
            queue = _rows(db.owner_url, "public.notification_queue")
            history = _rows(db.owner_url, "public.registration_notifications")
            losing = [u for u in plan(db.owner_url, nn) if u.drops]
            if losing:
                before = snapshot_of(db)
                with pytest.raises(MigrationError, match="would delete data") as refused:
                    rollback(db.owner_url, nn)
                for u in losing:
                    assert u.drops in str(refused.value)
                assert snapshot_of(db) == before, f"--to {nn:02d} refused, yet changed things"
                rollback(db.owner_url, nn, drop_data=True)
            else:
                rollback(db.owner_url, nn)
                # Nothing dropped: every queue and delivery row, every column, as it was.
                assert _rows(db.owner_url, "public.notification_queue") == queue
                assert _rows(db.owner_url, "public.registration_notifications") == history
            assert _applied(db.owner_url) == [n for n in numbers if n <= nn]
            if nn >= 3:  # the history outlives every undo but 03's
                kept = _rows(db.owner_url, "public.registration_notifications",
                             "id, registration_id, channel, recipient, status, attempts")
                assert [r["id"] for r in kept] == [r["id"] for r in history]
            if nn >= 4:
                assert [r["id"] for r in _rows(db.owner_url, "public.notification_queue")] == [
                    r["id"] for r in queue]
            migrate(db.owner_url)
            again = catalog_state(db)
            assert again == straight_catalog, f"--to {nn:02d}:\n" + first_difference(
                straight_catalog, again)
        # The longest way round, checked with pg_dump and psql as well.
        again = schema_state(db)
        assert again == straight, first_difference(straight, again)


def snapshot_of(db) -> dict[str, str]:
    with connect(db.admin_url) as c:
        snap = snapshot(c)
        snap["ledger"] = str(c.execute("SELECT array_agg(filename ORDER BY filename) AS f "
                                       "FROM regnotify.migrations").fetchone()["f"])
        for table in ("registration_notifications", "notification_queue", "registrations"):
            snap[f"rows|{table}"] = str(c.execute(f"SELECT count(*) AS n FROM {table}"
                                                  ).fetchone()["n"])
    return snap


def test_a_data_dropping_undo_refuses_and_says_what_it_would_drop(pg_cluster, capsys):
    with database(pg_cluster, "vanilla") as db:
        migrate(db.owner_url)
        _add_history(db.owner_url, 1)
        before = snapshot_of(db)
        assert main(["migrate", "--to", "16", "--database-url", db.owner_url]) == 2
        err = capsys.readouterr().err
        assert "would delete data and nothing was changed" in err
        assert "17_languages: each customer's language (registrations.language)" in err
        assert "--drop-data" in err
        assert snapshot_of(db) == before
        assert main(["migrate", "--to", "16", "--drop-data", "--database-url",
                     db.owner_url]) == 0
        out = capsys.readouterr().out
        assert "undid 20_timeline_languages_and_replies.sql" in out
        assert "it is now just after 16" in out
        assert max(_applied(db.owner_url)) == 16


def test_the_undo_files_say_what_they_drop_on_their_first_line():
    for f in discover():
        undo = undo_file(f.filename)
        first = undo.sql.splitlines()[0]
        assert first.startswith("-- "), f.filename
        if "drops-data" in undo.sql:
            assert undo.drops, f"{undo.path.name}: drops-data must be the first line"
    assert not any(p.suffix == ".sql" and ".down" in p.name
                   for p in migrations_dir().glob("*.sql")), "undo files live in down/"


def _copy_migrations(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), folder)
    return folder


def test_a_failing_undo_leaves_the_database_as_it_was(pg_cluster, tmp_path):
    folder = _copy_migrations(tmp_path)
    top, below = discover(folder)[-1], discover(folder)[-2]
    with database(pg_cluster, "supabase") as db:
        migrate(db.owner_url, folder)
        _add_history(db.owner_url, 1)
        before = snapshot_of(db)
        dump = schema_state(db)
        # It changes things, then fails half-way.
        broken = down_dir(folder) / top.filename.replace(".sql", ".down.sql")
        broken.write_text("DROP TABLE public.sms_opt_outs;\n"
                          "REVOKE ALL ON public.registrations FROM service_role;\n"
                          "SELECT 1 / 0;\n")
        with pytest.raises(MigrationError, match=f"undo of {top.filename} failed and was "
                                                 "rolled back"):
            rollback(db.owner_url, number(below.filename), drop_data=True, folder=folder)
        assert snapshot_of(db) == before
        assert schema_state(db) == dump


def test_each_undo_is_its_own_transaction(pg_cluster, tmp_path):
    folder = _copy_migrations(tmp_path)
    files = discover(folder)
    top, middle, below = files[-1], files[-2], files[-3]
    with database(pg_cluster, "vanilla") as db:
        migrate(db.owner_url, folder)
        (down_dir(folder) / middle.filename.replace(".sql", ".down.sql")).write_text(
            "SELECT no_such_function();\n")
        with pytest.raises(MigrationError, match=middle.filename):
            rollback(db.owner_url, number(below.filename), drop_data=True, folder=folder)
        # The newest was undone and stays undone; the failed one is still applied.
        assert number(top.filename) not in _applied(db.owner_url)
        assert number(middle.filename) in _applied(db.owner_url)
        with connect(db.admin_url) as c:
            actions = [(r["filename"], r["action"]) for r in c.execute(
                "SELECT filename, action FROM regnotify.history ORDER BY id DESC LIMIT 1")]
        assert actions == [(top.filename, "undo")]


def test_an_undo_that_would_drop_an_adopted_table_is_refused(pg_cluster, tmp_path):
    folder = _copy_migrations(tmp_path)
    with database(pg_cluster, "plain") as db:
        seed_tables(db.owner_url, rows=50)
        rows = seed_rows(db.owner_url)
        migrate(db.owner_url, folder)
        # An undo written without asking regnotify.adopted(): the runner's guard.
        (down_dir(folder) / "03_registration_notifications.down.sql").write_text(
            "-- drops-data: the delivery history\n"
            "DROP TABLE IF EXISTS public.registration_notifications;\n")
        with pytest.raises(MigrationError, match=r"03_registration_notifications\.sql would "
                                                 r"remove what was there before regnotify: "
                                                 r"public\.registration_notifications"):
            rollback(db.owner_url, 2, drop_data=True, folder=folder)
        assert _applied(db.owner_url) == [1, 2, 3]
        assert seed_rows(db.owner_url) == rows
        # The shipped undo keeps it, and forward again works over it.
        rollback(db.owner_url, 1, drop_data=True)
        assert seed_rows(db.owner_url) == rows
        migrate(db.owner_url)
        assert seed_rows(db.owner_url) == rows


def test_to_a_number_that_does_not_exist_is_refused(pg_cluster):
    with database(pg_cluster, "vanilla") as db:
        migrate(db.owner_url)
        with pytest.raises(MigrationError, match="no migration numbered 99"):
            rollback(db.owner_url, 99)


# ── Any sequence of steps back and forward ───────────────────────────────────


#: The migration that made jwt_is_admin(), and the staff console's.
ADMIN_FUNCTION, STAFF_CONSOLE = 4, 21
_CLAIMS_ONLY = "SELECT coalesce(auth.jwt() -> 'app_metadata' ->> 'role', '') = 'admin'\n"


def _refusing_regnotify_admin(state: str) -> str:
    """A state below 21 reached by undoing 21: the one deliberate difference from a straight
    migrate is jwt_is_admin(), 04's claims-only test but refusing regnotify-issued tokens
    (the console's staff sessions must not turn admin again by their claims alone)."""
    at = state.index(_CLAIMS_ONLY, state.index("fn|public.jwt_is_admin()")) + len(_CLAIMS_ONLY)
    return (state[:at] + "       AND coalesce(auth.jwt() ->> 'iss', '') <> 'regnotify'\n"
            + state[at:])


def _straight_states(pg_cluster, tmp_path: Path) -> dict[int, str]:
    """The catalog just after each migration, applied straight (00: none applied)."""
    folder = tmp_path / "straight"
    folder.mkdir()
    states: dict[int, str] = {}
    with database(pg_cluster, "vanilla") as ref:
        states[0] = _normalized(ref)
        for f in discover():
            shutil.copy(f.path, folder / f.filename)
            migrate(ref.owner_url, folder)
            states[number(f.filename)] = _normalized(ref)
    return states


def _normalized(db) -> str:
    """catalog_state with each ACL's items sorted: steps back re-grant in their own order."""
    from db.install.catalog_snapshot import normalized

    with connect(db.admin_url) as c:
        snap = normalized(snapshot(c))
    order = catalog_state(db).split("\n")
    return "\n".join([f"{k} = {v}" for k, v in sorted(snap.items())]
                     + [line for line in order if line.startswith(("cols ", "owner "))])


def test_any_sequence_of_migrate_and_migrate_to_ends_as_a_straight_migrate(pg_cluster, tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    numbers = sorted(number(f.filename) for f in discover())
    states = _straight_states(pg_cluster, tmp_path)
    db_holder: dict[str, object] = {}

    # None: `regnotify migrate`; a number: `regnotify migrate --to NN --drop-data`.
    steps = st.lists(st.one_of(st.none(), st.sampled_from([0, *numbers])), min_size=1,
                     max_size=4)

    @settings(max_examples=5, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(steps)
    def run(sequence: list[int | None]) -> None:
        db = db_holder["db"]
        migrate(db.owner_url)
        expected = numbers[-1]
        refusing = False
        for step in sequence:
            if step is None:
                migrate(db.owner_url)
                expected = numbers[-1]
                refusing = False
            else:
                rollback(db.owner_url, step, drop_data=True)
                if expected >= STAFF_CONSOLE > step:
                    refusing = True
                expected = min(expected, step)
                if step < ADMIN_FUNCTION:
                    refusing = False
            at = max(_applied(db.owner_url), default=0)
            assert at == expected
            want = _refusing_regnotify_admin(states[at]) if refusing else states[at]
            now = _normalized(db)
            assert now == want, f"after {sequence}:\n" + first_difference(want, now)

    with database(pg_cluster, "vanilla") as db:
        db_holder["db"] = db
        run()
