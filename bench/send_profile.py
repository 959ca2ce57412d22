"""Where a send's CPU goes: a zero-latency drain on a private stack, profiled.

    python -m bench.send_profile                 # CPU ms per send by part, SQL, Redis
    python -m bench.send_profile --yappi         # and a profile of one worker (pip install yappi)

Prints CPU ms per send of the workers, PostgreSQL and Redis (bench.pipeline.
CpuMeter), each statement's calls and execution time per send
(pg_stat_statements) and each Redis command's (INFO commandstats). With
--yappi the drain runs on one worker process under yappi (CPU clock, every
thread) and the functions that took the most are listed; the figures are
then inflated by the profiler, so read them as shares. A warm-up drain runs
first, so connection set-up and imports are not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

#: Set in the profiled worker's environment: the folder its control files and stats go to.
PROFILE_DIR = "REGNOTIFY_PROFILE_DIR"
WARM_UP = 200


def _profiled_worker() -> None:
    """`python -m bench.send_profile --worker ARGS`: `regnotify worker ARGS` under yappi.

    Profiling starts when `start` appears in PROFILE_DIR and stops (stats in
    `worker.pstat`, then `done`) when `stop` does.
    """
    import yappi

    folder = Path(os.environ[PROFILE_DIR])

    def control() -> None:
        while not (folder / "start").exists():
            time.sleep(0.05)
        yappi.set_clock_type("cpu")
        yappi.start(builtins=False, profile_threads=True)
        while not (folder / "stop").exists():
            time.sleep(0.05)
        yappi.stop()
        yappi.get_func_stats().save(str(folder / "worker.pstat"), type="pstat")
        (folder / "done").touch()

    threading.Thread(target=control, name="profile-control", daemon=True).start()
    from tasks.cli.main import main

    sys.exit(main(sys.argv[2:]))


def _top(pstat: Path, count: int) -> list[str]:
    import pstats

    lines: list[str] = []
    stats = pstats.Stats(str(pstat))
    total = max(stats.total_tt, 1e-9)  # type: ignore[attr-defined]
    ranked = sorted(stats.stats.items(), key=lambda kv: -kv[1][3])  # type: ignore[attr-defined]
    for (path, line, name), (_, calls, _, cumulative, _) in ranked[:count]:
        where = "/".join(Path(path).parts[-2:])
        lines.append(f"{100 * cumulative / total:5.1f} %  {calls:>7}  {where}:{line}({name})")
    return lines


def measure(notifications: int, processes: int, threads: int,
            yappi_dir: Path | None) -> dict[str, Any]:
    """One drain of `notifications` (two sends each) after a warm-up; the figures."""
    import psycopg
    import redis

    from bench import pipeline, workload
    from bench.pipeline import WorkerShape
    from bench.stack import isolate_environment, private_stack
    from tasks.broker.app import create_app

    isolate_environment()
    shape = WorkerShape(processes, threads)
    with private_stack(statements=True) as stack:
        workload.fresh(stack.pg.url, WARM_UP + notifications)
        for wire in (stack.twilio, stack.resend):
            wire.reset()
            wire.configure(latency=0.0)
        app = create_app()
        app.conf.broker_url = stack.redis.url
        argv = pipeline.our_argv(shape.loglevel)
        if yappi_dir is not None:
            stack.env[PROFILE_DIR] = str(yappi_dir)

            def argv(threads: int) -> list[str]:
                command = pipeline.our_argv(shape.loglevel)(threads)
                return [sys.executable, "-m", "bench.send_profile", "--worker", *command[3:]]
        try:
            with pipeline.workers(stack, app, shape, argv, "profile") as procs:
                pipeline.add_due(stack, WARM_UP)
                pipeline.run_sends(stack, app, procs, 2 * WARM_UP, latency_s=0.0, timeout_s=600)
                time.sleep(1.5)  # the warm-up's buffered metrics and events go out
                broker = redis.Redis.from_url(stack.redis.url)
                broker.config_resetstat()
                with psycopg.connect(stack.pg.url, autocommit=True) as conn:
                    conn.execute("SELECT pg_stat_statements_reset()")
                pipeline.add_due(stack, notifications, offset=WARM_UP)
                if yappi_dir is not None:
                    (yappi_dir / "start").touch()
                    time.sleep(0.3)
                run = pipeline.run_sends(stack, app, procs, 2 * notifications, latency_s=0.0,
                                         timeout_s=1800)
                if yappi_dir is not None:
                    (yappi_dir / "stop").touch()
                    deadline = time.monotonic() + 60
                    while not (yappi_dir / "done").exists() and time.monotonic() < deadline:
                        time.sleep(0.1)
                with psycopg.connect(stack.pg.url, autocommit=True) as conn:
                    statements = conn.execute(
                        "SELECT calls, total_exec_time,"
                        " left(regexp_replace(query, '\\s+', ' ', 'g'), 100)"
                        " FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12"
                    ).fetchall()
                commands = broker.info("commandstats")
                broker.close()
        finally:
            app.close()
    sends = max(1, run.sends)
    return {
        "sends": run.sends,
        "sends_per_s": round(run.per_s, 1),
        "cpu_ms_per_send": run.cpu_ms_per_send,
        "statements": [{"calls_per_send": round(calls / sends, 3),
                        "exec_ms_per_send": round(ms / sends, 4), "query": text}
                       for calls, ms, text in statements],
        "redis_commands": {name.removeprefix("cmdstat_"): {
            "calls_per_send": round(v["calls"] / sends, 3),
            "us_per_send": round(v["usec"] / sends, 1)}
            for name, v in sorted(commands.items(), key=lambda kv: -kv[1]["usec"])[:10]},
    }


def main(argv: list[str] | None = None) -> int:
    """Run the drain, print the figures (and the profile), end with them as one JSON line."""
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["--worker"]:
        _profiled_worker()
    p = argparse.ArgumentParser(prog="python -m bench.send_profile",
                                description=(__doc__ or "").split("\n")[0])
    p.add_argument("--notifications", type=int, default=1500,
                   help="registrations made due, two sends each (default 1500)")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--threads", type=int, default=32)
    p.add_argument("--yappi", action="store_true",
                   help="profile one worker process with yappi (pip install yappi)")
    p.add_argument("--top", type=int, default=40, help="functions listed with --yappi")
    args = p.parse_args(args_in)
    folder = None
    if args.yappi:
        try:
            import yappi  # noqa: F401
        except ImportError:
            p.error("--yappi needs yappi: .venv/bin/pip install yappi")
        folder = Path(tempfile.mkdtemp(prefix="regnotify-profile-"))
    figures = measure(args.notifications, 1 if args.yappi else args.processes, args.threads,
                      folder)
    print(f"{figures['sends']} sends at {figures['sends_per_s']}/s;"
          f" CPU ms per send {figures['cpu_ms_per_send']}")
    for row in figures["statements"]:
        print(f"  sql {row['calls_per_send']:>6} calls {row['exec_ms_per_send']:>7} ms"
              f"  {row['query']}")
    for name, row in figures["redis_commands"].items():
        print(f"  redis {name:<22} {row['calls_per_send']:>6} calls {row['us_per_send']:>7} us")
    if folder is not None and (folder / "worker.pstat").exists():
        print("worker profile (share of the profiled worker's CPU, cumulative; calls):")
        print("\n".join(_top(folder / "worker.pstat", args.top)))
        figures["profile"] = str(folder / "worker.pstat")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
