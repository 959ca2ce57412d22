"""What README.md tells a newcomer is what the code does: SQL that runs, ports, paths."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.pg import new_registration

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start:] if end == -1 else README[start:end]


def test_the_stage_change_sql_in_the_readme_runs_and_silences(conn):
    blocks = re.findall(r"```sql\n(.*?)```", _section("Changing a stage by hand"), re.S)
    plain, silenced = blocks
    loud_id, quiet_id = new_registration(conn), new_registration(conn)
    for sql, reg in ((plain, loud_id), (silenced, quiet_id)):
        conn.execute(re.sub(r"'[0-9a-f-]{36}'", f"'{reg}'", sql))
    rows = {r["registration_id"]: r for r in conn.execute(
        "SELECT registration_id::text, new_stage, notify_customer FROM notification_queue "
        "WHERE NOT sent").fetchall()}
    assert rows[loud_id]["new_stage"] == "sticker_ready" and rows[loud_id]["notify_customer"]
    assert rows[quiet_id]["new_stage"] == "sticker_ready"
    assert rows[quiet_id]["notify_customer"] is False
    # The flag was consumed: the next change notifies again.
    flag = conn.execute("SELECT pending_notify_customer FROM registrations WHERE id = %s",
                        (quiet_id,)).fetchone()
    assert flag["pending_notify_customer"] is None
    stages = {r["stage"] for r in conn.execute("SELECT stage FROM registration_stages")}
    intro = _section("Changing a stage by hand").split("The trigger")[0]
    named = set(re.findall(r"`([a-z_]+)`", intro))
    assert stages <= named


def test_the_ports_table_matches_up():
    from tasks.commands.up import DEFAULT_PORTS

    table = _section("Ports `regnotify up` uses")
    for name, port in DEFAULT_PORTS.items():
        assert re.search(rf"\| {port} \| `--{name}-port` \|", table), name


def test_the_webhook_paths_in_the_readme_are_the_relay_s():
    from tasks.relay import resend_webhooks, twilio_webhooks

    section = _section("Webhooks: how Twilio and Resend reach the relay")
    for path in (twilio_webhooks.STATUS_PATH, twilio_webhooks.INBOUND_PATH, resend_webhooks.PATH):
        assert f"https://relay.example.com{path}`" in section
    for event in resend_webhooks.HANDLED_EVENTS:
        assert event.removeprefix("email.") in section


def test_setup_installs_chromium_and_valgrind_only_when_asked():
    setup = (ROOT / "scripts" / "setup").read_text(encoding="utf-8")
    test = (ROOT / "scripts" / "test").read_text(encoding="utf-8")
    for flag, package in (("REGNOTIFY_BROWSER", "chromium"), ("REGNOTIFY_VALGRIND", "valgrind")):
        assert re.search(rf'if \[ "\$\{{{flag}:-0\}}" = 1 \]; then\n\s+.*{package}', setup)
        assert re.search(rf"\b{flag}=1 .*scripts/setup", test)
        assert f"`{flag}=1`" in README


def test_the_code_cites_no_document_or_issue_it_does_not_ship():
    found = subprocess.run(
        ["grep", "-rnE", r"DESIGN\.md|[Ii]ssue [0-9]+", "tasks", "db", "bench", "sql", "tests"],
        cwd=ROOT, capture_output=True, text=True)
    assert found.stdout == "", found.stdout


def test_the_api_section_shows_every_api_route_and_both_rpc_calls():
    from tasks.relay import api_me, api_registrations

    section = _section("The API")
    for path in (api_registrations.NOTIFY_PATH, api_registrations.TIMELINE_PATH,
                 api_me.LIST_PATH, api_me.ITEM_PATH):
        curl = path.replace("{id}", "$REG")
        assert re.search(rf"curl[^\n]*https://relay\.example\.com{re.escape(curl)}\b",
                         section), path
    for fn in ("request_notification", "notification_timeline"):
        assert f"supabase.rpc('{fn}'" in section
