"""`regnotify staff add/remove/list`, the undo of migration 21, and the reply e-mail's link
to the console."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import psycopg
import pytest

from db.replies import Digest, QuotedReply
from tasks.messages.reply_mail import digest_email
from tests.cli_runner import cli
from tests.conftest import fresh_owned_database
from tests.pg import as_role, connect

pytest_plugins = ["tests.staff_helpers"]


def test_add_list_remove_and_add_again(clean_db, conn, capsys):
    code, out, err = cli(capsys, "staff", "add", "Sam@Dealer.example", "--name", "Sam Rivera",
                         "--database-url", clean_db)
    assert code == 0 and "sam@dealer.example added: Sam Rivera may sign in at /staff" in out
    code, out, _ = cli(capsys, "staff", "list", "--json", "--database-url", clean_db)
    members = json.loads(out)["members"]
    assert [(m["email"], m["name"], m["active"]) for m in members] == [
        ("sam@dealer.example", "Sam Rivera", True)]
    code, out, _ = cli(capsys, "staff", "remove", "sam@dealer.example", "--database-url",
                       clean_db)
    assert code == 0 and "stops at its next request" in out
    # Supabase's admins are Supabase's: removal here does not end their role there.
    assert "remove that role in Supabase" in " ".join(out.split())
    row = conn.execute("SELECT active, removed_at FROM staff_members").fetchone()
    assert row["active"] is False and row["removed_at"] is not None
    code, _, err = cli(capsys, "staff", "remove", "sam@dealer.example", "--database-url",
                       clean_db)
    assert code != 0 and "is not an active staff member" in err and "Traceback" not in err
    code, out, _ = cli(capsys, "staff", "add", "sam@dealer.example", "--name", "Sam R.",
                       "--database-url", clean_db)
    assert code == 0 and "is a member again" in out
    assert conn.execute("SELECT active, removed_at, name FROM staff_members").fetchone() == {
        "active": True, "removed_at": None, "name": "Sam R."}


@pytest.mark.parametrize("argv", [["add", "not-an-address", "--name", "X"],
                                  ["add", "a@b.example", "--name", "  "],
                                  ["remove", "nobody"]])
def test_bad_input_is_one_line_with_the_fix(clean_db, capsys, argv):
    code, _out, err = cli(capsys, "staff", *argv, "--database-url", clean_db)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_the_undo_restores_jwt_is_admin_and_the_file_applies_again(pg_cluster):
    from db.install.migrations import migrate
    from db.sql_files import migrations_dir

    url = fresh_owned_database(pg_cluster, "regnotify_staff_undo", "staff_undo_owner",
                               "CREATEROLE")
    migrate(url)
    down = (migrations_dir() / "down" / "21_staff_console.down.sql").read_text()
    assert down.startswith("-- drops-data: ")
    admin = {"role": "authenticated", "iss": "regnotify", "email": "x@y.example",
             "app_metadata": {"role": "admin"}}
    with connect(url) as c:
        c.execute(down)
        c.execute(down)  # IF EXISTS throughout: twice is fine
        assert c.execute("SELECT to_regclass('public.staff_members') AS t").fetchone()["t"] is None
        assert c.execute("SELECT to_regnamespace('regnotify_staff') AS n").fetchone()["n"] is None
    # Back to 04's rule (any admin claim, no membership) for other issuers; a token
    # regnotify issued (the console's ten-hour sessions) is no admin without the list.
    with as_role(url, "authenticated", {**admin, "iss": "https://x.supabase.co/auth/v1"}) as c:
        assert c.execute("SELECT public.jwt_is_admin() AS a").fetchone()["a"] is True
    with as_role(url, "authenticated", admin) as c:
        assert c.execute("SELECT public.jwt_is_admin() AS a").fetchone()["a"] is False
    up = (migrations_dir() / "21_staff_console.sql").read_text()
    with connect(url) as c:
        c.execute(up)
        c.execute(up)
    with as_role(url, "authenticated", admin) as c:
        assert c.execute("SELECT public.jwt_is_admin() AS a").fetchone()["a"] is False
    with connect(pg_cluster.admin_url) as c:
        c.execute('DROP DATABASE IF EXISTS "regnotify_staff_undo" WITH (FORCE)')


def test_the_console_objects_hold_exactly_the_intended_grants(clean_db, conn):
    def table(role: str, name: str) -> list[str]:
        return [p for p in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
                if conn.execute("SELECT has_table_privilege(%s, %s, %s) AS ok",
                                (role, name, p)).fetchone()["ok"]]
    assert table("authenticated", "public.staff_members") == ["SELECT"]
    assert table("authenticated", "public.staff_actions") == ["SELECT"]
    assert table("anon", "public.staff_members") == table("anon", "public.staff_actions") == []
    assert table("service_role", "public.staff_members") == []
    for fn in ("regnotify_staff.resend(bigint)", "regnotify_staff.mark_handled(text,bigint)",
               "regnotify_staff.find_registrations(text,text,text,text,integer)",
               "regnotify_staff.send_now(uuid,boolean)", "regnotify_staff.silence_next(uuid)",
               "regnotify_staff.record_action(uuid,text,jsonb)", "public.staff_me()"):
        holders = {r for r in ("anon", "authenticated", "service_role", "public")
                   if conn.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE') AS ok",
                                   (r, fn)).fetchone()["ok"]}
        assert holders == {"authenticated"}, fn
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(clean_db, "anon") as c:
        c.execute("SELECT public.staff_me()")


def test_the_reply_email_links_to_the_reply_in_the_console():
    digest = Digest(id=7, from_phone="+17135550101", registration_id=None,
                    recipient="s@x.example", attempts=0, first_at=datetime.now(UTC))
    mail = digest_email(digest, None, [QuotedReply("Hi", datetime.now(UTC), 42)], "Lone Star",
                        "https://relay.example/staff")
    assert "https://relay.example/staff/replies?show=all#reply-42" in mail.text
    assert "https://relay.example/staff/replies?show=all#reply-42" in mail.html
    plain = digest_email(digest, None, [QuotedReply("Hi", datetime.now(UTC), 42)], "Lone Star")
    assert "/staff" not in plain.text
