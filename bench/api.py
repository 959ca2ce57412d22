"""How fast the relay's API and customer page answer, against PostgreSQL doing the same work.

`python -m bench.api` starts a private PostgreSQL and Redis, loads 2,000
registrations (one customer owns three of them and 24 messages), starts
`regnotify relay` on a port of its own, and drives it with `hey` (Debian's
`hey` package) at 50 concurrent callers for each of:

- `static`: GET /portal/portal.css, bytes from memory (the floor: HTTP and ASGI only);
- `me`: GET /api/me/registrations with the customer's bearer token;
- `timeline`: GET /api/registrations/{id}/timeline, same token;
- `portal`: GET /portal with the customer's session cookie (the signed-in page).

Then pgbench runs the API's own transaction for /api/me/registrations
(role, claims, the query, commit) with `-c 50` on the same database: what
PostgreSQL alone does with that work. Each route's `api_vs_sql_ratio` is its
requests/s over pgbench's transactions/s. Every request must answer 200 or
the run stops. Beside the latencies, each route's CPU time per request in
the relay's processes and in the database server (from /proc): the figures
that hold still when other work loads the machine. The last line printed is
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import psycopg

from bench import workload
from bench.stack import Stack, isolate_environment, private_stack
from bench.trigger import pgbench_path
from db.queries import query
from tasks.local.embedded_postgres import free_port

REGISTRATIONS = 2000
#: The customer the API routes are asked about: bench registration 1's phone.
CUSTOMER_PHONE = "+15550000001"
CUSTOMER_REGISTRATIONS = 3
CUSTOMER_MESSAGES = 24
SESSION_SECRET = "bench-api-session-secret-0123456789abcdef"
RELAY_TOKEN = "bench-api-relay-token-0123456789"

_RPS = re.compile(r"Requests/sec:\s+([0-9.]+)")
_PCT = re.compile(r"\s(50|99)%+ in ([0-9.]+) secs")
_STATUS = re.compile(r"\[(\d{3})\]\s+(\d+) responses")
_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)


@dataclass
class RouteFigures:
    route: str
    path: str
    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    #: CPU time per request (user + system) of the relay's processes and of the
    #: database server's: what the work costs, whatever else loads the machine.
    relay_cpu_ms: float
    db_cpu_ms: float
    api_vs_sql_ratio: float = 0.0


_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (the relay's supervisor and workers; the server's backends)."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(_children(current))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes, and of their children that exited and were
    reaped (a server backend or a pool connection closed during the run still counts)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime
        total += sum(int(v) for v in fields[11:15]) * _TICK_S
    return total


def seed(url: str) -> str:
    """2,000 registrations; the customer's three and 24 messages. Returns one of theirs."""
    with psycopg.connect(url, autocommit=True) as conn:
        workload.reset(conn)
        workload.seed_registrations(conn, REGISTRATIONS - (CUSTOMER_REGISTRATIONS - 1))
        conn.execute(
            """
            INSERT INTO public.registrations
                (customer_name, customer_phone, customer_email, vehicle_year, vehicle_make,
                 vehicle_model)
            SELECT 'Customer 1', %s, 'customer1@example.com', 2021, 'Ford', 'F-150'
            FROM generate_series(2, %s)
            """, (CUSTOMER_PHONE, CUSTOMER_REGISTRATIONS))
        mine = [str(r[0]) for r in conn.execute(
            "SELECT id FROM public.registrations WHERE customer_phone = %s ORDER BY created_at, id",
            (CUSTOMER_PHONE,))]
        assert len(mine) == CUSTOMER_REGISTRATIONS, mine
        conn.execute(
            """
            INSERT INTO public.registration_notifications
                (registration_id, channel, recipient, status, new_stage, sent_at)
            SELECT (%(ids)s::uuid[])[1 + i %% %(n)s],
                   CASE WHEN i %% 2 = 0 THEN 'sms' ELSE 'email' END,
                   CASE WHEN i %% 2 = 0 THEN %(phone)s ELSE 'customer1@example.com' END,
                   'sent', 'documents_collected', now() - make_interval(mins => i)
            FROM generate_series(1, %(messages)s) AS i
            """, {"ids": mine, "n": len(mine), "phone": CUSTOMER_PHONE,
                  "messages": CUSTOMER_MESSAGES})
        conn.execute("ANALYZE")
    return mine[0]


def customer_token() -> str:
    from tasks.auth.api_tokens import issue_session_token
    from tasks.settings import Settings

    settings = Settings(session_secret=SESSION_SECRET)  # type: ignore[arg-type]
    return issue_session_token(settings, phone=CUSTOMER_PHONE, subject="bench-customer",
                               ttl_s=3600)


def start_relay(stack: Stack, port: int, workers: int | None, log: Path) -> subprocess.Popen:
    env = {**os.environ, **stack.env, "RELAY_TOKEN": RELAY_TOKEN,
           "SESSION_SECRET": SESSION_SECRET,
           # Sign-in by Twilio Verify (never called here), as a deployed relay
           # has it: with the console's codes the relay runs one worker only.
           "TWILIO_VERIFY_SERVICE_SID": "VA" + "0" * 32}
    argv = [sys.executable, "-m", "tasks.cli", "relay", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning"]
    if workers is not None:
        argv += ["--workers", str(workers)]
    out = log.open("wb")
    return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_ready(url: str, relay: subprocess.Popen, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if relay.poll() is not None:
            raise RuntimeError(f"the relay exited ({relay.returncode}):\n"
                               + log.read_text(errors="replace")[-3000:])
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the relay did not answer /healthz in time:\n"
                       + log.read_text(errors="replace")[-3000:])


def stop_relay(relay: subprocess.Popen) -> None:
    if relay.poll() is None:
        relay.terminate()
        try:
            relay.wait(15)
        except subprocess.TimeoutExpired:
            relay.kill()
            relay.wait(5)


def hey(url: str, *, requests: int, concurrency: int, headers: list[str]) -> tuple[
        float, float, float]:
    """requests/s, p50 ms, p99 ms; raises unless every answer was a 200."""
    binary = shutil.which("hey")
    if binary is None:
        raise FileNotFoundError("hey is not installed: `apt-get install hey` (scripts/setup "
                                "installs it)")
    argv = [binary, "-n", str(requests), "-c", str(concurrency), "-t", "20"]
    for header in headers:
        argv += ["-H", header]
    done = subprocess.run([*argv, url], capture_output=True, text=True, check=False)
    statuses = {code: int(n) for code, n in _STATUS.findall(done.stdout)}
    rps = _RPS.search(done.stdout)
    pct = dict(_PCT.findall(done.stdout))
    if done.returncode != 0 or rps is None or set(pct) != {"50", "99"}:
        raise RuntimeError(f"hey failed ({done.returncode}): {done.stdout[-1500:]}"
                           f"{done.stderr[-1500:]}")
    if set(statuses) != {"200"} or statuses["200"] != requests:
        raise RuntimeError(f"{url}: not every answer was 200: {statuses}\n{done.stdout[-1500:]}")
    return float(rps.group(1)), float(pct["50"]) * 1000, float(pct["99"]) * 1000


def pgbench_script(phone: str) -> str:
    """The API's transaction for /api/me/registrations, as pgbench runs it."""
    claims = json.dumps({"sub": "bench-customer", "role": "authenticated",
                         "aud": "authenticated", "phone": phone.lstrip("+")})
    sql = " ".join(query("my_registrations").split())
    return (
        "BEGIN;\n"
        f"SELECT set_config('role', 'authenticated', true), "
        f"set_config('request.jwt.claims', '{claims}', true);\n"
        f"{sql};\n"
        "COMMIT;\n")


def run_pgbench(stack: Stack, *, seconds: float, clients: int) -> float:
    with tempfile.TemporaryDirectory(prefix="regnotify-bench-api-") as tmp:
        script = Path(tmp) / "as_caller.sql"
        script.write_text(pgbench_script(CUSTOMER_PHONE))
        os.chmod(tmp, 0o755)
        os.chmod(script, 0o644)
        argv = [str(pgbench_path(stack)), "-h", "127.0.0.1", "-p", str(stack.pg.port),
                "-U", "postgres", "-n", "-M", "prepared", "-c", str(clients), "-j", "2",
                "-T", str(max(1, round(seconds))), "-f", str(script), stack.pg.database]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    match = _TPS.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"pgbench failed ({done.returncode}): {done.stderr[-2000:]}")
    return float(match.group(1))


def profiled(pids: list[int], out: Path, seconds: float) -> list[subprocess.Popen]:
    """py-spy recording each relay process for `seconds` (collapsed stacks, one file each)."""
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(binary).exists():
        raise FileNotFoundError("py-spy is not installed: `pip install py-spy`")
    return [subprocess.Popen([binary, "record", "--pid", str(pid), "--format", "raw",
                              "--rate", "200", "--duration", str(max(1, round(seconds))),
                              "--nonblocking", "--output", str(out.with_suffix(f".{pid}.txt"))],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for pid in pids]


def measure(*, requests: int, concurrency: int, workers: int | None,
            pgbench_s: float, profile: Path | None = None) -> tuple[list[RouteFigures], float]:
    isolate_environment()
    with private_stack() as stack:
        reg = seed(stack.pg.url)
        token = customer_token()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = stack.root / "relay.log"
        relay = start_relay(stack, port, workers, log)
        try:
            wait_ready(url, relay, log)
            bearer = [f"Authorization: Bearer {token}"]
            routes = [
                ("static", "/portal/portal.css", []),
                ("me", "/api/me/registrations", bearer),
                ("timeline", f"/api/registrations/{reg}/timeline", bearer),
                ("portal", "/portal", [f"Cookie: rn_session={token}"]),
            ]
            # One request each first: every route answers 200 with real content.
            for name, path, headers in routes:
                got = httpx.get(url + path, headers=dict(h.split(": ", 1) for h in headers),
                                timeout=10)
                if got.status_code != 200:
                    raise RuntimeError(f"{name} {path}: {got.status_code} {got.text[:300]}")
            me = httpx.get(url + "/api/me/registrations", headers={
                "Authorization": f"Bearer {token}"}).json()["registrations"]
            assert len(me) == CUSTOMER_REGISTRATIONS, me
            figures = []
            postmaster = int((stack.pg.data_dir / "postmaster.pid").read_text().split()[0])
            for name, path, headers in routes:
                # A short warm-up: prepared statements and pools, not the figure.
                hey(url + path, requests=min(requests, 200), concurrency=concurrency,
                    headers=headers)
                relay_pids, db_pids = process_tree(relay.pid), process_tree(postmaster)
                relay_before, db_before = cpu_seconds(relay_pids), cpu_seconds(db_pids)
                spies = []
                if profile is not None:
                    # The workers (or the one process): not the idle supervisor.
                    serving = relay_pids[1:] if len(relay_pids) > 1 else relay_pids
                    spies = profiled(serving, profile / name, seconds=4)
                rps, p50, p99 = hey(url + path, requests=requests, concurrency=concurrency,
                                    headers=headers)
                # The trees again: processes started during the run count in full.
                relay_cpu = (cpu_seconds(process_tree(relay.pid)) - relay_before) * 1000 / requests
                db_cpu = (cpu_seconds(process_tree(postmaster)) - db_before) * 1000 / requests
                for spy in spies:
                    spy.wait(30)
                figures.append(RouteFigures(name, path, requests, rps, p50, p99, relay_cpu,
                                            db_cpu))
        finally:
            stop_relay(relay)
        tps = run_pgbench(stack, seconds=pgbench_s, clients=concurrency)
    for f in figures:
        f.api_vs_sql_ratio = round(f.requests_per_s / tps, 3) if tps else 0.0
    return figures, tps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="per route (default 3000)")
    parser.add_argument("--concurrency", type=int, default=50, help="callers (default 50)")
    parser.add_argument("--workers", type=int, default=None,
                        help="relay worker processes (default: the relay's own default)")
    parser.add_argument("--pgbench-seconds", type=float, default=10.0)
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="record each route with py-spy (collapsed stacks) into DIR")
    args = parser.parse_args(argv)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    figures, tps = measure(requests=args.requests, concurrency=args.concurrency,
                           workers=args.workers, pgbench_s=args.pgbench_seconds,
                           profile=args.profile)
    print(f"{'route':<10} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'api_vs_sql':>11}"
          f" {'relay cpu ms':>13} {'db cpu ms':>10}")
    for f in figures:
        print(f"{f.route:<10} {f.requests_per_s:>11.0f} {f.p50_ms:>8.1f} {f.p99_ms:>8.1f} "
              f"{f.api_vs_sql_ratio:>11.3f} {f.relay_cpu_ms:>13.2f} {f.db_cpu_ms:>10.2f}"
              f"   GET {f.path}")
    print(f"pgbench -c {args.concurrency} (the as-caller transaction of /api/me/registrations): "
          f"{tps:.0f} tps")
    goals = {f.route: f.p99_ms <= 50 for f in figures if f.route != "static"}
    print("p99 <= 50 ms: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in goals.items()))
    print(json.dumps({"bench": "api", "concurrency": args.concurrency,
                      "workers": args.workers, "pgbench_tps": round(tps, 1),
                      "routes": {f.route: {k: (round(v, 2) if isinstance(v, float) else v)
                                           for k, v in asdict(f).items() if k != "route"}
                                 for f in figures}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
