"""A storm of stage changes from many connections while queue runs claim and send."""

from __future__ import annotations

import random
import threading
import time

import psycopg
import pytest

from tests.pg import connect
from tests.reliability import ledger
from tests.reliability.conftest import wait_drained
from tests.reliability.report import record

pytestmark = pytest.mark.reliability

STAGES = ["sale_complete", "documents_collected", "submitted_to_dmv", "dmv_processing",
          "sticker_ready", "sticker_delivered", "needs_attention"]
CONNECTIONS, UPDATES, REGISTRATIONS = 8, 1000, 100


def test_storm_keeps_one_pending_row_and_ends_on_the_final_stage(stack, twilio_wire, resend_wire):
    url = stack.database_url
    with connect(url) as conn:
        conn.execute("UPDATE notification_config SET debounce_window = interval '300 ms', "
                     "max_wait = interval '2 seconds'")
        ids = [str(r["id"]) for r in conn.execute(
            "INSERT INTO registrations (customer_name, customer_phone, notification_pref) "
            "SELECT 'Storm ' || i, '+1555700' || lpad(i::text, 4, '0'), 'sms' "
            "FROM generate_series(1, %s) AS i RETURNING id", (REGISTRATIONS,))]
    stack.worker.start(stack.app)
    stack.ticker.every_s = 0.3
    stack.ticker.start()

    errors: list[BaseException] = []
    violations: list[list] = []
    storming = threading.Event()
    storming.set()

    def staff(seed: int) -> None:
        rng = random.Random(seed)
        try:
            with psycopg.connect(url, autocommit=True) as c:
                for _ in range(UPDATES):
                    c.execute("UPDATE registrations SET current_stage = %s WHERE id = %s",
                              (rng.choice(STAGES), rng.choice(ids)))
                    # Paced so the storm spans many debounce windows and queue runs.
                    time.sleep(rng.uniform(0, 0.006))
        except BaseException as exc:
            errors.append(exc)

    def watcher() -> None:
        with psycopg.connect(url, autocommit=True) as c:
            while storming.is_set():
                rows = c.execute("SELECT registration_id, count(*) FROM notification_queue "
                                 "WHERE NOT sent GROUP BY 1 HAVING count(*) > 1").fetchall()
                if rows:
                    violations.append(rows)
                time.sleep(0.01)

    watch = threading.Thread(target=watcher)
    watch.start()
    started = time.monotonic()
    threads = [threading.Thread(target=staff, args=(n,)) for n in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    storm_s = time.monotonic() - started
    storming.clear()
    watch.join()
    assert not errors, errors[:3]
    assert not violations, violations[:3]

    took = wait_drained(url, 120)
    result = ledger.take(url, twilio_wire, resend_wire, same_text_is_duplicate=False)
    record(f"storm: {CONNECTIONS}x{UPDATES} updates over {REGISTRATIONS} registrations "
           f"({storm_s:.0f} s)", result, took)
    result.assert_clean()
    with connect(url) as conn:
        final = {str(r["id"]): r["current_stage"] for r in conn.execute(
            "SELECT id, current_stage FROM registrations")}
        last_sent = {str(r["registration_id"]): r["new_stage"] for r in conn.execute(
            "SELECT DISTINCT ON (registration_id) registration_id, new_stage "
            "FROM registration_notifications WHERE status = 'sent' "
            "ORDER BY registration_id, queue_id DESC")}
    wrong = {reg: (last_sent.get(reg), stage) for reg, stage in final.items()
             if last_sent.get(reg, "sale_complete") != stage}
    assert not wrong, list(wrong.items())[:5]
    with connect(url) as conn:
        bursts = conn.execute("SELECT count(*) AS n FROM notification_queue").fetchone()["n"]
    assert bursts > REGISTRATIONS  # windows closed and reopened during the storm
