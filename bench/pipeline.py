"""Send throughput through real workers: zero-latency drain, 200 ms providers, memory.

Workers are `regnotify worker` processes (threads pool) on the stack's Redis;
the providers are the wire fakes, reached through the real twilio and resend
SDKs. A run seeds due queue rows, enqueues one tick, and times the provider
requests the wires receive, so what is measured is the whole pipeline: claim,
dispatch, send tasks, database writes, SDK calls.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from celery import Celery

from bench import bare_celery, workload
from bench.stack import Stack
from tests.worker_process import WorkerProcess, regnotify_worker_argv


@dataclass(frozen=True)
class WorkerShape:
    """How many worker processes, and threads in each; the bare reference uses the same."""

    processes: int
    threads: int
    loglevel: str = "info"

    @property
    def concurrency(self) -> int:
        """Tasks in progress at once across all processes."""
        return self.processes * self.threads

    def __str__(self) -> str:
        return f"{self.processes} x {self.threads} threads"


@dataclass
class SendRun:
    """Provider requests of one run, timed at the wires, and the CPU they took."""

    sends: int
    seconds: float
    tick_to_first_s: float
    rss_kib: dict[str, int] = field(default_factory=dict)
    #: Worker CPU (user + system, all worker processes) per send, ms.
    worker_cpu_ms_per_send: float = 0.0
    #: The whole machine's CPU busy over the run (every process, ours or not), %.
    machine_busy_pct: float = 0.0
    #: Cores used by the benchmark's own processes (workers, PostgreSQL,
    #: Redis, this process with the wires), and by everything else on the machine.
    stack_cores: float = 0.0
    other_cores: float = 0.0
    #: CPU ms per send of each part of the stack: `worker`, `postgresql`,
    #: `redis`, and `stack`, their sum (the wires and this process, which
    #: stand in for the providers, are left out).
    cpu_ms_per_send: dict[str, float] = field(default_factory=dict)
    #: Provider requests: a batch of e-mails is one request of many sends.
    requests: int = 0

    @property
    def per_s(self) -> float:
        """Sends per second from the first request to the last answer."""
        return self.sends / self.seconds if self.seconds > 0 else 0.0

    @property
    def requests_per_s(self) -> float:
        """Provider requests per second over the same time."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def rss_kib(pid: int) -> int:
    """Resident memory of a process (VmRSS), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stack_roles(stack: Stack, procs: Sequence[WorkerProcess]) -> dict[str, list[int]]:
    """The stack's processes by role: workers, postgresql (postmaster and backends),
    redis, and bench (this process, which also runs the wires)."""
    roles: dict[str, list[int]] = {
        "worker": [p.proc.pid for p in procs if p.proc], "postgresql": [], "redis": [],
        "bench": [os.getpid()],
    }
    redis_proc = getattr(stack.redis, "_proc", None)
    if redis_proc is not None:
        roles["redis"].append(redis_proc.pid)
    with contextlib.suppress(OSError, ValueError, IndexError):
        postmaster = int((stack.pg.data_dir / "postmaster.pid").read_text().split()[0])
        roles["postgresql"].append(postmaster)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError):
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    if ppid == postmaster:
                        roles["postgresql"].append(int(entry.name))
    return roles


class CpuMeter:
    """CPU seconds used by each role of the stack between `__init__` and `read`.

    PostgreSQL backends come and go: those born during the run (a worker's
    pool connecting on its first send) count all their CPU; those that ended
    during it count nothing (the workers' pooled connections outlive a run).
    """

    def __init__(self, stack: Stack, procs: Sequence[WorkerProcess]) -> None:
        self.stack = stack
        self.procs = list(procs)
        roles = stack_roles(stack, procs)
        self.before = pids_cpu_s([pid for pids in roles.values() for pid in pids])

    def read(self) -> dict[str, float]:
        """{role: CPU seconds since the start} for worker, postgresql, redis, bench."""
        roles = stack_roles(self.stack, self.procs)
        after = pids_cpu_s([pid for pids in roles.values() for pid in pids])
        return {role: sum(after[pid] - self.before.get(pid, 0.0) for pid in pids if pid in after)
                for role, pids in roles.items()}


def per_unit_ms(cpu_s: dict[str, float], units: int) -> dict[str, float]:
    """CPU ms per unit of work of worker, postgresql, redis and their sum, `stack`."""
    parts = {role: 1000.0 * cpu_s.get(role, 0.0) / max(1, units)
             for role in ("worker", "postgresql", "redis")}
    return {**{k: round(v, 2) for k, v in parts.items()}, "stack": round(sum(parts.values()), 2)}


def pids_cpu_s(pids: Sequence[int]) -> dict[int, float]:
    """CPU seconds of each process still alive."""
    out: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            out[pid] = process_cpu_s(pid)
    return out


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # user .. steal; guest time is already counted in user
    return total - idle, total


def wait_for_workers(app: Celery, count: int, procs: Sequence[WorkerProcess],
                     timeout: float = 60.0) -> None:
    """Wait until `count` workers answer a ping (WorkerProcess.start stops at the first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.proc is not None and proc.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{proc.log()}")
        if len(app.control.ping(timeout=0.5) or []) >= count:
            return
    raise RuntimeError("workers did not answer a ping:\n" + "\n".join(p.log() for p in procs))


@contextmanager
def workers(stack: Stack, app: Celery, shape: WorkerShape, argv: Callable[[int], list[str]],
            name: str) -> Iterator[list[WorkerProcess]]:
    """Start `shape.processes` workers from `argv(threads)`, stop them after."""
    env = {**stack.env, "WORKER_CONCURRENCY": str(shape.threads)}
    procs = [
        WorkerProcess([*argv(shape.threads), "-n", f"{name}{i}@%h"], env,
                      stack.root / f"{name}{i}.log")
        for i in range(shape.processes)
    ]
    try:
        for proc in procs:
            proc.start(app, timeout=60)
        wait_for_workers(app, shape.processes, procs)
        yield procs
    finally:
        for proc in procs:
            # One worker failing to stop must not leave the others running.
            with contextlib.suppress(Exception):
                proc.stop()


def our_argv(loglevel: str) -> Callable[[int], list[str]]:
    """`regnotify worker` with the given log level, as a function of the thread count."""

    def argv(threads: int) -> list[str]:
        command = regnotify_worker_argv(threads)
        command[command.index("-l") + 1] = loglevel
        return command

    return argv


@dataclass(frozen=True)
class BareRun:
    """Bare Celery: no-op tasks per second, and the CPU ms each task cost."""

    per_s: float
    #: worker, postgresql (idle here), redis and stack, as SendRun's.
    cpu_ms_per_task: dict[str, float]


def measure_bare(stack: Stack, shape: WorkerShape, tasks: int) -> BareRun:
    """No-op tasks per second of bare Celery, same broker, pool and concurrency as ours.

    The tasks are queued first; the queue is watched from before the workers
    start, because a small batch is drained before they even answer a ping.
    The CPU per task comes from a second batch, published to the workers once
    they are up: the first one's CPU includes their start.
    """
    bare_celery.preload(stack.redis.url, tasks)
    app = bare_celery.make_app(stack.redis.url)
    timing: list[tuple[float, float]] = []
    failure: list[BaseException] = []

    def watch() -> None:
        try:
            timing.append(bare_celery.wait_drained(stack.redis.url, tasks, timeout_s=600))
        except BaseException as exc:  # re-raised below, in the caller's thread
            failure.append(exc)

    watcher = threading.Thread(target=watch, name="bare-celery-watch", daemon=True)
    watcher.start()
    try:
        with workers(stack, app, shape,
                     lambda threads: bare_celery.worker_argv(threads, shape.loglevel),
                     "bare") as procs:
            watcher.join()
            if failure:
                raise failure[0]
            meter = CpuMeter(stack, procs)
            bare_celery.preload(stack.redis.url, tasks)
            bare_celery.wait_drained(stack.redis.url, tasks, timeout_s=600)
            cpu = meter.read()
    finally:
        app.close()
    first, end = timing[0]
    return BareRun(tasks / (end - first), per_unit_ms(cpu, tasks))


def accepted(stack: Stack) -> int:
    """Sends both wires accepted so far."""
    return stack.twilio.accepted_count() + stack.resend.accepted_count()


def add_due(stack: Stack, notifications: int, *, offset: int = 0) -> None:
    """Make `notifications` registrations (after the first `offset`) due."""
    with psycopg.connect(stack.pg.url, autocommit=True) as conn:
        workload.seed_due(conn, notifications, offset=offset)


def run_sends(stack: Stack, app: Celery, procs: Sequence[WorkerProcess], expected: int, *,
              latency_s: float, timeout_s: float,
              rss_after: int | None = None) -> SendRun:
    """Tick once, wait for `expected` more accepted sends, and time them at the wires.

    Due rows must already be seeded. With `rss_after`, the workers' resident
    memory is read once that many sends of this run were accepted, and again
    at the end.
    """
    before_twilio = stack.twilio.accepted_count()
    before_resend = stack.resend.accepted_count()
    before = before_twilio + before_resend
    rss: dict[str, int] = {}
    meter = CpuMeter(stack, procs)
    busy_before, total_before = machine_ticks()
    ticked = time.monotonic()
    app.send_task("process_notification_queue", kwargs={"reason": "bench"})
    deadline = ticked + timeout_s
    while (done := accepted(stack) - before) < expected:
        if rss_after is not None and "first" not in rss and done >= rss_after:
            rss["first"] = sum(rss_kib(p.proc.pid) for p in procs if p.proc)
            rss["first_at_sends"] = done
        if time.monotonic() > deadline:
            logs = "\n".join(p.log()[-2000:] for p in procs)
            raise TimeoutError(f"only {done} of {expected} sends in {timeout_s} s\n{logs}")
        time.sleep(0.02)
    busy_after, total_after = machine_ticks()
    cpu = meter.read()
    stack_cpu = sum(cpu.values())
    if rss_after is not None:
        rss["end"] = sum(rss_kib(p.proc.pid) for p in procs if p.proc)
        rss["end_at_sends"] = accepted(stack) - before
    sends = stack.twilio.sends()[before_twilio:] + stack.resend.sends()[before_resend:]
    times = sorted(s.received_mono for s in sends)
    # First request to last answer: the last wave still waits `latency_s`.
    seconds = times[-1] - times[0] + latency_s
    busy = 100.0 * (busy_after - busy_before) / max(1, total_after - total_before)
    wall = time.monotonic() - ticked
    busy_cores = busy / 100.0 * (os.cpu_count() or 1)
    stack_cores = stack_cpu / wall
    per_send = per_unit_ms(cpu, len(times))
    # A batch's members arrive in one request, at one moment.
    requests = len({(s.provider, s.received_mono) for s in sends})
    return SendRun(len(times), seconds, times[0] - ticked, rss, per_send["worker"],
                   round(busy, 1), round(stack_cores, 2),
                   round(max(0.0, busy_cores - stack_cores), 2), per_send, requests)
