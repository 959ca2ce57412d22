"""What the debounce trigger costs a stage UPDATE: pgbench with ours, the seed's, and none.

pgbench flips `current_stage` of random registrations among `rows`, so every
UPDATE changes the stage and fires the enabled trigger. Four variants run
side by side: no trigger (`plain`), two readings of the seed's trigger and
ours (`trigger`, `queue_status_notification()` from the migrations). The
seed's trigger is read two ways, because the issues describe it two ways:
`seed` as the bare upsert (no pinned search_path, fired by every UPDATE, the
stage tested in the body) and `seed_plan` as the seed plan lists it
(fixed search_path, fired only when current_stage changes). Both are peers
installed only in the bench's own database. Each variant runs durable and
with `synchronous_commit=off`, in turn, round after round, the order of the
variants rotating per round, so load from other processes falls on every
side of each ratio. Before each run the queue is emptied and a checkpoint
taken, so every run starts from the same state.

`cpu_per_update` adds the profile behind the ratios: the server's CPU time
per one-row UPDATE of each variant, which other load on the machine barely
moves. It also measures `trigger_unpinned`, a bench-only copy of our
function without its `SET search_path` clause, so the pin's own cost is the
difference between two otherwise identical functions, and `pinned_floor`,
the seed's upsert pinned and stripped of everything else, so what the pin
costs even a body that does less than the seed. `bench.trigger_profile`
counts the same variants in instructions, which do not move at all.

Run on its own (a private cluster, no Redis or workers):
`python -m bench.trigger [--rows N] [--rounds N] [--seconds S] [--clients N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench import workload
from bench.plans import PLANS
from bench.stack import Stack
from bench.trigger_peers import (
    CPU_VARIANTS,
    TRIGGER,
    VARIANTS,
    drop_peers,
    install_peers,
)

_SCRIPT = """\\set n random(1, {rows})
UPDATE public.registrations
SET current_stage = CASE current_stage WHEN 'documents_collected' THEN 'submitted_to_dmv'
                    ELSE 'documents_collected' END
WHERE id = {id_expr};
"""

_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)


def pgbench_path(stack: Stack) -> Path:
    """pgbench next to the server binaries, else on PATH."""
    assert stack.pg.bindir is not None
    candidate = stack.pg.bindir / "pgbench"
    if candidate.exists():
        return candidate
    found = shutil.which("pgbench")
    if not found:
        raise FileNotFoundError("pgbench not found (install postgresql-contrib / postgresql-15)")
    return Path(found)


@dataclass
class TriggerFigures:
    """UPDATEs per second of each variant, every round kept."""

    rows: int
    seconds_per_run: float
    clients: int
    tps: dict[str, list[float]] = field(default_factory=dict)

    def median(self, variant: str) -> float:
        """Median tps of one variant over the rounds."""
        return statistics.median(self.tps[variant])

    def _paired(self, durable: bool, top: str, bottom: str) -> float:
        # Median of per-round ratios, so each ratio pairs neighbouring runs.
        mode = "durable" if durable else "async"
        pairs = zip(self.tps[f"{mode}_{top}"], self.tps[f"{mode}_{bottom}"], strict=True)
        return statistics.median(a / b for a, b in pairs)

    def ratio(self, durable: bool) -> float:
        """Ours / no trigger."""
        return self._paired(durable, "trigger", "plain")

    def seed_ratio(self, durable: bool) -> float:
        """Ours / the bare seed upsert (no pin) (>= 1.0: ours is at least as fast)."""
        return self._paired(durable, "trigger", "seed")

    def seed_plan_ratio(self, durable: bool) -> float:
        """Ours / the seed plan's trigger as the plan lists it (pinned, WHEN on the stage)."""
        return self._paired(durable, "trigger", "seed_plan")


def _run_pgbench(stack: Stack, script: Path, *, seconds: float, clients: int,
                 durable: bool) -> float:
    env = {**os.environ, "PGOPTIONS": "" if durable else "-c synchronous_commit=off"}
    argv = [str(pgbench_path(stack)), "-h", "127.0.0.1", "-p", str(stack.pg.port),
            "-U", "postgres", "-n", "-M", "prepared", "-c", str(clients),
            "-j", str(min(clients, 2)), "-T", str(max(1, round(seconds))), "-f", str(script),
            stack.pg.database]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    match = _TPS.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"pgbench failed ({done.returncode}): {done.stderr[-2000:]}")
    return float(match.group(1))


def _prepare_run(conn: psycopg.Connection, variant: str) -> None:
    conn.execute("TRUNCATE public.notification_queue CASCADE")
    for name in filter(None, CPU_VARIANTS.values()):
        state = "ENABLE" if CPU_VARIANTS[variant] == name else "DISABLE"
        conn.execute(f"ALTER TABLE public.registrations {state} TRIGGER {name}")
    conn.execute("CHECKPOINT")


def _orders(variants: dict[str, str | None] = VARIANTS) -> Iterator[tuple[str, ...]]:
    # Every variant takes every position in turn: none always runs first
    # (fresh after the checkpoint) or last.
    names = tuple(variants)
    shift = 0
    while True:
        yield names[shift:] + names[:shift]
        shift = (shift + 1) % len(names)


def measure(stack: Stack, *, rows: int, rounds: int, seconds: float,
            clients: int = 4) -> TriggerFigures:
    """Run every variant `rounds` times each, interleaved; ours enabled afterwards."""
    workload.fresh(stack.pg.url, rows)
    figures = TriggerFigures(rows, seconds, clients,
                             {f"{m}_{v}": [] for m in ("durable", "async") for v in VARIANTS})
    with tempfile.TemporaryDirectory(prefix="regnotify-pgbench-") as tmp:
        script = Path(tmp) / "flip_stage.sql"
        script.write_text(_SCRIPT.format(rows=rows, id_expr=workload.registration_id_sql(":n")))
        os.chmod(tmp, 0o755)
        with psycopg.connect(stack.pg.url, autocommit=True) as conn:
            install_peers(conn)
            try:
                orders = _orders()
                for _ in range(rounds):
                    order = next(orders)
                    for durable in (True, False):
                        mode = "durable" if durable else "async"
                        for variant in order:
                            _prepare_run(conn, variant)
                            tps = _run_pgbench(stack, script, seconds=seconds, clients=clients,
                                               durable=durable)
                            figures.tps[f"{mode}_{variant}"].append(tps)
            finally:
                drop_peers(conn)
                conn.execute(f"ALTER TABLE public.registrations ENABLE TRIGGER {TRIGGER}")
                conn.execute("TRUNCATE public.notification_queue CASCADE")
    return figures


def _backend_cpu_ns(pid: int) -> int | None:
    # Linux: time on CPU of one process, in ns (the server runs on this host).
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cpu_per_update(stack: Stack, *, rows: int, updates: int,
                   rounds: int) -> dict[str, list[float]]:
    """Backend CPU (us) per one-row stage UPDATE, each its own transaction, per variant.

    The profile behind the tps ratios: one connection, sync commit off, the
    server's own CPU time read from /proc, so load from other processes on
    the machine barely moves it. Empty where /proc is not readable.
    """
    update = ("UPDATE public.registrations SET current_stage = CASE current_stage"
              " WHEN 'documents_collected' THEN 'submitted_to_dmv'"
              " ELSE 'documents_collected' END"
              f" WHERE id = {workload.registration_id_sql('%s::int')}")
    spent: dict[str, list[float]] = {v: [] for v in CPU_VARIANTS}
    picks = random.Random(16)
    with psycopg.connect(stack.pg.url, autocommit=True) as admin, \
            psycopg.connect(stack.pg.url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        if _backend_cpu_ns(pid) is None:
            return {}
        install_peers(admin)
        try:
            orders = _orders(CPU_VARIANTS)
            for _ in range(rounds):
                for variant in next(orders):
                    _prepare_run(admin, variant)
                    ids = [picks.randint(1, rows) for _ in range(updates + 50)]
                    for n in ids[:50]:  # plans and caches warm
                        conn.execute(update, (n,), prepare=True)
                    before = _backend_cpu_ns(pid) or 0
                    with conn.pipeline():
                        for n in ids[50:]:
                            conn.execute(update, (n,), prepare=True)
                    after = _backend_cpu_ns(pid) or 0
                    spent[variant].append(round((after - before) / updates / 1000, 2))
        finally:
            drop_peers(admin)
            admin.execute(f"ALTER TABLE public.registrations ENABLE TRIGGER {TRIGGER}")
            admin.execute("TRUNCATE public.notification_queue CASCADE")
    return spent


@contextmanager
def _database_only() -> Iterator[Stack]:
    """A private migrated cluster and nothing else: all the trigger bench needs."""
    from tasks.local.embedded_postgres import EmbeddedPostgres, free_port

    root = Path(tempfile.mkdtemp(prefix="regnotify-bench-trigger-"))
    pg = EmbeddedPostgres(data_dir=root / "pg", port=free_port(), database="regnotify_bench")
    pg.chown(root)
    try:
        pg.start()
        from db.install.migrations import migrate

        migrate(pg.url)
        yield Stack(pg, None, None, None, root)  # type: ignore[arg-type]
    finally:
        try:
            pg.stop("immediate")
        finally:
            shutil.rmtree(root, ignore_errors=True)


def summary(figures: TriggerFigures) -> dict[str, float]:
    """The trigger figures, as `regnotify bench` reports them."""
    return {
        "trigger_overhead_ratio": round(figures.ratio(durable=False), 3),
        "trigger_overhead_ratio_durable": round(figures.ratio(durable=True), 3),
        "trigger_vs_seed_ratio": round(figures.seed_ratio(durable=False), 3),
        "trigger_vs_seed_ratio_durable": round(figures.seed_ratio(durable=True), 3),
        "trigger_vs_seed_plan_ratio": round(figures.seed_plan_ratio(durable=False), 3),
        "trigger_vs_seed_plan_ratio_durable": round(figures.seed_plan_ratio(durable=True), 3),
    }


def _paired_gap_us(cpu: dict[str, list[float]], top: str, bottom: str) -> float | None:
    # Median of per-round differences: each pairs two runs of the same round.
    if not cpu.get(top) or not cpu.get(bottom):
        return None
    pairs = zip(cpu[top], cpu[bottom], strict=True)
    return round(statistics.median(a - b for a, b in pairs), 2)


def pin_cost_us(cpu: dict[str, list[float]]) -> float | None:
    """CPU (us) the pinned search_path adds per UPDATE: median of per-round differences."""
    return _paired_gap_us(cpu, "trigger", "trigger_unpinned")


def floor_gap_us(cpu: dict[str, list[float]]) -> float | None:
    """CPU (us) the pinned floor costs over the seed: what no rewrite of a pinned body wins back."""
    return _paired_gap_us(cpu, "pinned_floor", "seed")


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.trigger`: the trigger variants alone, on a private cluster."""
    quick = PLANS["quick"]
    p = argparse.ArgumentParser(prog="python -m bench.trigger", description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=quick.trigger_rows)
    p.add_argument("--rounds", type=int, default=quick.trigger_rounds)
    p.add_argument("--seconds", type=float, default=quick.trigger_seconds)
    p.add_argument("--clients", type=int, default=quick.trigger_clients)
    p.add_argument("--cpu-updates", type=int, default=3000,
                   help="one-row UPDATEs per variant and round for the CPU profile (0: skip)")
    args = p.parse_args(argv)
    with _database_only() as stack:
        figures = measure(stack, rows=args.rows, rounds=args.rounds, seconds=args.seconds,
                          clients=args.clients)
        cpu = (cpu_per_update(stack, rows=args.rows, updates=args.cpu_updates,
                              rounds=args.rounds) if args.cpu_updates else {})
    for key, values in figures.tps.items():
        print(f"{key:<18} median {figures.median(key):>9,.0f} tps  rounds "
              + " ".join(f"{v:,.0f}" for v in values))
    for variant, values in cpu.items():
        print(f"cpu {variant:<16} median {statistics.median(values):>6.2f} us/UPDATE  rounds "
              + " ".join(f"{v:.2f}" for v in values))
    pin = pin_cost_us(cpu)
    if pin is not None:
        print(f"cpu pinned search_path costs {pin:.2f} us/UPDATE"
              " (median of per-round trigger - trigger_unpinned)")
    floor = floor_gap_us(cpu)
    if floor is not None:
        print(f"cpu pinned floor - seed {floor:+.2f} us/UPDATE (a pinned body doing less than"
              " the seed; `python -m bench.trigger_profile` counts it in instructions)")
    print(json.dumps(summary(figures)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
