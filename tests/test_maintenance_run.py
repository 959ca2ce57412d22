"""The queue run only composes its jobs: one tuple, in a pinned order, one shape.

`process_notification_queue` (tasks/worker/queue_tick.py) runs the jobs of
tasks/maintenance/ in order with one budget and adds their results up into
the TickResult dict it has always returned; adding a job is one line in
`JOBS`.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import get_type_hints

import pytest

from tests.flow import change_stage, make_due, run_tick
from tests.pg import new_registration

ROOT = Path(__file__).resolve().parent.parent

#: The order matters: sends first, repairs next, staff mail, and the wake-up
#: last, since it reads what every job before it left.
ORDER = [
    "tasks.maintenance.claim.claim_due_rows",
    "tasks.maintenance.holds.release_holds",
    "tasks.maintenance.sweep.sweep_lost_sends",
    "tasks.maintenance.unpark.unpark_due",
    "tasks.maintenance.digests.claim_reply_digests",
    "tasks.maintenance.next_due.next_wakeup",
]

#: What the task has always returned (tests and Flower read it).
RESULT_KEYS = ["reason", "closed", "dispatched", "swept", "released", "unparked",
               "reply_digests", "batches", "continued", "wake_in_s"]


def _name(job) -> str:
    return f"{job.__module__}.{job.__qualname__}"


def test_the_jobs_are_one_tuple_in_a_pinned_order():
    from tasks.worker import queue_tick

    assert isinstance(queue_tick.JOBS, tuple)
    assert [_name(job) for job in queue_tick.JOBS] == ORDER


def test_every_job_has_the_same_shape_in_its_own_module():
    from tasks.maintenance.job import RunBudget, TickResult
    from tasks.worker.queue_tick import JOBS

    assert len({job.__module__ for job in JOBS}) == len(JOBS)
    for job in JOBS:
        assert list(inspect.signature(job).parameters) == ["run"], _name(job)
        assert get_type_hints(job) == {"run": RunBudget, "return": TickResult}, _name(job)


def test_the_task_module_holds_no_job_of_its_own():
    # No SQL, no publishing of sends: those live in the jobs. The module only
    # lists them and runs them (and enqueues runs: request_tick, arm_wakeup).
    source = (ROOT / "tasks/worker/queue_tick.py").read_text()
    tree = ast.parse(source)
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for a in node.names}
    assert not {m for m in imported if m == "db" or m.startswith("db.")}
    assert not imported & {"tasks.database", "tasks.broker.dispatch", "sqlalchemy"}
    [drain] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "drain_due"]
    calls = {n.func.id for n in ast.walk(drain)
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert calls <= {"sum", "job", "TickResult", "get_settings"}
    # A new job is one line: the tuple spans one line per job and its brackets.
    [jobs] = [n for n in tree.body if isinstance(n, ast.AnnAssign)
              and getattr(n.target, "id", None) == "JOBS"]
    assert jobs.end_lineno - jobs.lineno + 1 == len(ORDER) + 2


def test_results_add_up_counts_a_continuation_and_the_earliest_wake_up():
    from tasks.maintenance.job import TickResult

    total = (TickResult(closed=2, dispatched=3, batches=1, wake_in_s=9.0)
             + TickResult(released=4, continued=True)
             + TickResult(dispatched=1, wake_in_s=2.5)
             + TickResult())
    assert total == TickResult(closed=2, dispatched=4, released=4, batches=1,
                               continued=True, wake_in_s=2.5)
    assert (TickResult() + TickResult()).wake_in_s is None


@pytest.mark.usefixtures("pipeline")
def test_the_task_runs_every_job_in_order_with_one_budget(conn, twilio_wire, monkeypatch):
    from tasks.maintenance.job import TickResult
    from tasks.worker import queue_tick

    seen: list[tuple[str, object]] = []

    def recorded(job):
        def run(run):
            seen.append((_name(job), run))
            return job(run)
        return run

    def added(run) -> TickResult:
        # A job someone adds: one more line in the tuple, its counts in the result.
        seen.append(("added", run))
        return TickResult(closed=40)

    monkeypatch.setattr(queue_tick, "JOBS",
                        (*(recorded(job) for job in queue_tick.JOBS), added))
    reg = new_registration(conn, customer_phone="+15551238101", notification_pref="sms")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)

    result = run_tick()
    assert [name for name, _ in seen] == [*ORDER, "added"]
    assert len({id(budget) for _, budget in seen}) == 1
    assert list(result) == RESULT_KEYS
    assert (result["reason"], result["closed"], result["dispatched"], result["batches"],
            result["continued"]) == ("tick", 41, 1, 1, False)
    assert twilio_wire.accepted_count() == 1
