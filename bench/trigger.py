"""What the debounce trigger costs a stage UPDATE: pgbench with it and without it, interleaved.

pgbench flips `current_stage` of random registrations among `rows`, so every
UPDATE changes the stage and fires `queue_status_notification()` when the
trigger is enabled. The four variants (trigger on/off x durable /
`synchronous_commit=off`) run in turn, round after round, the order of on
and off alternating per round, so load from other processes falls on both
sides of each ratio. Before each run the queue is emptied and a checkpoint
taken, so every run starts from the same state.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench import workload
from bench.stack import Stack

TRIGGER = "trg_queue_status_notification"

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

    def ratio(self, durable: bool) -> float:
        """Median of per-round ratios (with / without), so each ratio pairs neighbouring runs."""
        mode = "durable" if durable else "async"
        pairs = zip(self.tps[f"{mode}_trigger"], self.tps[f"{mode}_plain"], strict=True)
        return statistics.median(on / off for on, off in pairs)


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


def _prepare_run(conn: psycopg.Connection, trigger: bool) -> None:
    conn.execute("TRUNCATE public.notification_queue CASCADE")
    state = "ENABLE" if trigger else "DISABLE"
    conn.execute(f"ALTER TABLE public.registrations {state} TRIGGER {TRIGGER}")
    conn.execute("CHECKPOINT")


def measure(stack: Stack, *, rows: int, rounds: int, seconds: float,
            clients: int = 4) -> TriggerFigures:
    """Run the four variants `rounds` times each, interleaved; trigger enabled afterwards."""
    workload.fresh(stack.pg.url, rows)
    figures = TriggerFigures(rows, seconds, clients,
                             {f"{m}_{t}": [] for m in ("durable", "async")
                              for t in ("trigger", "plain")})
    with tempfile.TemporaryDirectory(prefix="regnotify-pgbench-") as tmp:
        script = Path(tmp) / "flip_stage.sql"
        script.write_text(_SCRIPT.format(rows=rows, id_expr=workload.registration_id_sql(":n")))
        os.chmod(tmp, 0o755)
        with psycopg.connect(stack.pg.url, autocommit=True) as conn:
            try:
                for round_no in range(rounds):
                    order = (True, False) if round_no % 2 == 0 else (False, True)
                    for durable in (True, False):
                        mode = "durable" if durable else "async"
                        for trigger in order:
                            _prepare_run(conn, trigger)
                            tps = _run_pgbench(stack, script, seconds=seconds, clients=clients,
                                               durable=durable)
                            figures.tps[f"{mode}_{'trigger' if trigger else 'plain'}"].append(tps)
            finally:
                conn.execute(f"ALTER TABLE public.registrations ENABLE TRIGGER {TRIGGER}")
    return figures
