"""Figures for the scale plan (docs/scale.md), measured on the cluster harness.

Hosts are network namespaces (tests/cluster/harness.py): PostgreSQL, Redis,
three worker hosts, the relay and the provider stand-ins each have their
own, so each one's CPU is read apart. Run as root:

    .venv/bin/python -m bench.scale                  # 1,500 texts, 3 hosts x 1 process
    .venv/bin/python -m bench.scale --texts 3000 --threads 16

What it prints, one line each, then one JSON object:
- the drain: texts/s for the cluster and per worker process, with the
  stand-in's limits out of the way (what the pipeline itself can do);
- PostgreSQL per text sent: commits, rows written, WAL bytes, CPU ms;
  Redis and worker CPU ms per text;
- bytes on disk per registration (its row, queue row, delivery row, indexes);
- the relay: POST /tick and GET /healthz requests/s from several clients.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.pipeline import pids_cpu_s
from tests.cluster import netns
from tests.cluster.harness import RELAY_PORT, RELAY_TOKEN, Cluster, wait_until
from tests.cluster.scenario import WORKER_HOSTS, moving, seed_backlog

PG_STATS = ("SELECT xact_commit, tup_inserted, tup_updated, tup_deleted, "
            "pg_current_wal_lsn() - '0/0'::pg_lsn AS wal "
            "FROM pg_stat_database WHERE datname = current_database()")


def host_cpu_s(cluster: Cluster, role: str) -> dict[int, float]:
    """CPU seconds of every process in host `role`, by pid."""
    return pids_cpu_s(netns.pids_in(cluster.hosts[role].ns))


def cpu_since(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two readings (processes born since count whole)."""
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


def drain(cluster: Cluster, texts: int, processes: int) -> dict[str, Any]:
    """Seed `texts` SMS-only deliveries, let the relay tick, time them at the wire."""
    seed_backlog(cluster, texts)
    cluster.sql("UPDATE registrations SET notification_pref = 'sms'")
    # Settle: the seeding's own writes are not the sends'.
    time.sleep(2)
    pg0 = cluster.sql(PG_STATS)[0]
    roles = ("pg", "broker", *WORKER_HOSTS)
    cpu0 = {r: host_cpu_s(cluster, r) for r in roles}
    cluster.sql("UPDATE notification_queue SET send_after = now() - interval '1 second' "
                "WHERE NOT sent")
    wait_until(lambda: moving(cluster) == 0, 600, "the drain", every_s=0.5)
    cpu = {r: cpu_since(cpu0[r], host_cpu_s(cluster, r)) for r in roles}
    time.sleep(2)  # backends flush their statistics about once a second
    pg1 = cluster.sql(PG_STATS)[0]
    size = cluster.sql(
        "SELECT sum(pg_total_relation_size(t)) AS b FROM unnest(ARRAY['registrations', "
        "'notification_queue', 'registration_notifications']::regclass[]) AS t")[0]["b"]
    sends = cluster.twilio.sends()
    span = max(s.received_at for s in sends) - min(s.received_at for s in sends)
    n = len(sends)
    per_send = {
        "pg_commits": (pg1["xact_commit"] - pg0["xact_commit"]) / n,
        "pg_rows_written": sum(pg1[k] - pg0[k] for k in
                               ("tup_inserted", "tup_updated", "tup_deleted")) / n,
        "pg_wal_bytes": float(pg1["wal"] - pg0["wal"]) / n,
        "pg_cpu_ms": 1000 * cpu["pg"] / n,
        "redis_cpu_ms": 1000 * cpu["broker"] / n,
        "worker_cpu_ms": 1000 * sum(cpu[r] for r in WORKER_HOSTS) / n,
    }
    return {"texts": n, "seconds": span, "texts_per_s": n / span,
            "bytes_per_registration": round(float(size) / texts),
            "texts_per_s_per_process": n / span / processes,
            "per_text": {k: round(v, 2) for k, v in per_send.items()}}


def hammer(cluster: Cluster, request: Callable[[http.client.HTTPConnection], int],
           clients: int, seconds: float) -> float:
    """Requests/s answered 2xx by the relay to `clients` keep-alive clients on ctl."""
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(cluster.addr("relay"), RELAY_PORT, timeout=10)
        while time.monotonic() < stop:
            if 200 <= request(conn) < 300:
                counts[i] += 1
        conn.close()

    threads = [threading.Thread(target=cluster.in_ctl, args=(client, i)) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - started)


def _post_tick(conn: http.client.HTTPConnection) -> int:
    conn.request("POST", "/tick", body=b"{}", headers={
        "Authorization": f"Bearer {RELAY_TOKEN}", "Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    return response.status


def _get_health(conn: http.client.HTTPConnection) -> int:
    conn.request("GET", "/healthz")
    response = conn.getresponse()
    response.read()
    return response.status


def main(argv: list[str] | None = None) -> int:
    """Run the cluster, measure, print."""
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    p.add_argument("--texts", type=int, default=1500)
    p.add_argument("--threads", type=int, default=16, help="threads per worker process")
    p.add_argument("--relay-clients", type=int, default=8)
    p.add_argument("--relay-seconds", type=float, default=5.0)
    args = p.parse_args(argv)
    why = netns.usable()
    if why:
        print(f"bench.scale: {why}")
        return 2
    log_dir = Path(tempfile.mkdtemp(prefix="regnotify-scale-"))
    cluster = Cluster(log_dir)
    ok = False
    try:
        cluster.start_postgres()
        cluster.start_redis()
        # Limits far above what the pipeline does: the figure is ours, not theirs.
        cluster.start_wires(twilio_rps=100_000, resend_rps=100_000, twilio_latency=0.0,
                            resend_latency=0.0)
        env = cluster.app_env(cluster.redis_url, TWILIO_RATE_PER_S="100000",
                              RESEND_RATE_PER_S="100000", SWEEP_AFTER_S="300")
        cluster.start_workers(WORKER_HOSTS, env, args.threads)
        cluster.start_relay(env, tick_s=1.0)
        result = drain(cluster, args.texts, processes=len(WORKER_HOSTS))
        print(f"drain: {result['texts']} texts in {result['seconds']:.1f} s = "
              f"{result['texts_per_s']:.0f}/s on {len(WORKER_HOSTS)} hosts x 1 process x "
              f"{args.threads} threads ({result['texts_per_s_per_process']:.0f}/s per process; "
              f"machine: {os.cpu_count()} cores shared by every host)")
        print(f"per text: {result['per_text']}; on disk (tables + indexes) per registration "
              f"with one change and one text: {result['bytes_per_registration']} bytes")
        result["relay_tick_per_s"] = round(
            hammer(cluster, _post_tick, args.relay_clients, args.relay_seconds))
        result["relay_healthz_per_s"] = round(
            hammer(cluster, _get_health, args.relay_clients, args.relay_seconds))
        print(f"relay: POST /tick {result['relay_tick_per_s']}/s, GET /healthz "
              f"{result['relay_healthz_per_s']}/s ({args.relay_clients} keep-alive clients)")
        result["texts_per_s"] = round(result["texts_per_s"], 1)
        result["texts_per_s_per_process"] = round(result["texts_per_s_per_process"], 1)
        result["seconds"] = round(result["seconds"], 1)
        print(json.dumps(result))
        ok = True
    finally:
        cluster.close()
        if ok:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            print(f"bench.scale: the hosts' logs are in {log_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
