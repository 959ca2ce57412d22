"""What README.md and docs/ tell a newcomer is what the code does: SQL that runs, ports, paths.

Each fact is checked on the page that states it; the README keeps the first
steps and links the rest.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.pg import new_registration

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = ROOT / "docs"


def _page(name: str) -> str:
    """One page of the documentation site, e.g. "api.md"."""
    return (DOCS / name).read_text(encoding="utf-8")


def _section(page: str, title: str) -> str:
    """The section of `page` headed `title` (any level), up to the next heading of its level.

    Lines inside fenced code blocks are never headings (a shell comment starts with "# ").
    """
    lines = _page(page).splitlines(keepends=True)
    fenced, start, level, out = False, None, 0, []
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        heading = None if fenced else re.match(r"(#+) (.*)", line)
        if start is None:
            if heading and heading.group(2) == title:
                start, level = True, len(heading.group(1))
            else:
                continue
        elif heading and len(heading.group(1)) <= level:
            break
        out.append(line)
    assert start, f"docs/{page} has no heading {title!r}"
    return "".join(out)


def test_the_stage_change_sql_in_the_readme_runs_and_silences(conn):
    by_hand = _section("stage-changes.md", "Changing a stage by hand")
    blocks = re.findall(r"```sql\n(.*?)```", by_hand, re.S)
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
    intro = by_hand.split("The trigger")[0]
    named = set(re.findall(r"`([a-z_]+)`", intro))
    assert stages <= named


def test_the_reply_settings_sql_in_the_readme_runs(conn):
    section = _section("webhooks.md", "Webhooks: how Twilio and Resend reach the relay")
    (sql,) = re.findall(r"```sql\n(.*?)```", section.split("## Replies")[1], re.S)
    conn.execute(sql)
    row = conn.execute("SELECT staff_email, dealership_phone, help_reply, opt_out_keywords, "
                       "help_keywords FROM notification_config").fetchone()
    assert row["staff_email"] == "desk@dealer.example" and row["dealership_phone"]
    assert row["help_reply"].startswith("Lone Star Auto")
    table = section.split("## Replies")[1]
    for word in (*row["opt_out_keywords"], *row["help_keywords"]):
        assert word in table, word


def test_the_ports_table_matches_up():
    from tasks.cli.up import DEFAULT_PORTS

    table = _section("local-stack.md", "Ports `regnotify up` uses")
    for name, port in DEFAULT_PORTS.items():
        assert re.search(rf"\| {port} \| `--{name}-port` \|", table), name


def test_the_webhook_paths_in_the_readme_are_the_relay_s():
    from tasks.relay import resend_webhooks, twilio_webhooks

    section = _section("webhooks.md", "Webhooks: how Twilio and Resend reach the relay")
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
        # The README says scripts/test asks for both; the setup page says only then.
        assert f"`{flag}=1`" in README
        assert f"`{flag}=1`" in _section("local-stack.md", "What `scripts/setup` installs")


def test_the_code_cites_no_document_or_issue_it_does_not_ship():
    found = subprocess.run(
        ["grep", "-rnE", r"DESIGN\.md|[Ii]ssue [0-9]+", "tasks", "db", "bench", "sql", "tests"],
        cwd=ROOT, capture_output=True, text=True)
    assert found.stdout == "", found.stdout


def test_the_languages_section_runs_and_quotes_the_catalogs(conn):
    from tasks.messages.rendering import sms_opt_out

    section = _section("languages.md", "Languages")
    [sql] = re.findall(r"```sql\n(.*?)```", section, re.S)
    reg = new_registration(conn)
    conn.execute(re.sub(r"'[0-9a-f-]{36}'", f"'{reg}'", sql))
    row = conn.execute("SELECT r.language, c.default_language FROM registrations r, "
                       "notification_config c WHERE r.id = %s", (reg,)).fetchone()
    assert (row["language"], row["default_language"]) == ("en", "es")
    flat = " ".join(section.split())
    assert f'"{sms_opt_out("es")}"' in flat
    guarantees = _section("guarantees.md", "Guarantees, and how they are kept")
    assert sms_opt_out("en") in " ".join(guarantees.split())
    for path in re.findall(r"`(tasks/[\w/.]+\.(?:toml|py))`", section):
        assert (ROOT / path).exists(), path


def test_the_api_section_shows_every_api_route_and_both_rpc_calls():
    from tasks.relay import api_me, api_registrations

    section = _section("api.md", "The API")
    for path in (api_registrations.NOTIFY_PATH, api_registrations.TIMELINE_PATH,
                 api_me.LIST_PATH, api_me.ITEM_PATH):
        curl = path.replace("{id}", "$REG")
        assert re.search(rf"curl[^\n]*https://relay\.example\.com{re.escape(curl)}\b",
                         section), path
    for fn in ("request_notification", "notification_timeline"):
        assert f"supabase.rpc('{fn}'" in section


def _first_steps() -> str:
    start = README.index("## First steps")
    return README[start:README.index("\n## ", start + 1)]


def test_the_first_steps_sql_runs_at_the_psql_prompt(conn):
    """Step 3 opens psql and types its SQL there: the block runs as written, with a real id."""
    steps = _first_steps()
    opens = re.search(r"```sh\n(.*?)```", steps, re.S).group(1).strip()
    assert opens.startswith("psql ") and " -c " not in opens  # an interactive psql, not one query
    [sql] = re.findall(r"```sql\n(.*?)```", steps, re.S)
    reg = new_registration(conn)
    for statement in filter(None, (s.strip() for s in sql.replace("<id>", reg).split(";"))):
        conn.execute(statement)
    window = conn.execute("SELECT debounce_window FROM notification_config").fetchone()
    assert window["debounce_window"].total_seconds() == 5
    queued = conn.execute("SELECT new_stage FROM notification_queue WHERE NOT sent "
                          "AND registration_id = %s", (reg,)).fetchone()
    assert queued["new_stage"] == "sticker_ready"


def test_the_first_steps_quote_the_demo_and_call_commands_from_the_venv():
    steps = _first_steps()
    demo = (ROOT / "tasks" / "cli" / "demo.py").read_text(encoding="utf-8")
    quoted = re.search(r"`(See one timeline with: regnotify status) <id>`", steps).group(1)
    prints = re.findall(r'console\.print\((?:f?"([^"]*)"|(_portal_hint)\()', demo)
    # The timeline line is printed second to last, before the portal hint, as step 2 says.
    assert [p[0] or p[1] for p in prints[-2:]] == [quoted + " ", "_portal_hint"]
    assert not re.search(r"last line[^.]*See one timeline", steps, re.S)
    # Every command a step asks you to type runs from .venv/bin/ (the quoted demo line aside).
    typed = re.findall(r"`((?:\S+/)?regnotify (?:up|demo|status|send)\b[^`]*)`",
                       steps.replace(f"`{quoted} <id>`", ""))
    assert typed and all(t.startswith(".venv/bin/regnotify ") for t in typed), typed
