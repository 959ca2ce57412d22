"""A cluster of hosts on one machine: PostgreSQL, a broker, worker hosts, a relay, the providers.

Each host is a network namespace with one address on a private /24 that is
unique to the run; the switch is a bridge inside a namespace of its own. A
partition takes the host's port on the switch down (a cable pulled: packets
vanish, nobody is told); killing a host SIGKILLs every process in its
namespace. `Cluster.close()` removes every process and namespace it made,
and runs at exit too, so a failed or interrupted test leaves nothing.

The test process itself stays in the root namespace; it reaches the hosts
from a "ctl" host through `netns.run_in` (a thread that joined it).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tests.cluster import netns
from tests.wire.remote import RemoteWire
from tests.wire.resend_wire import DEFAULT_API_KEY
from tests.wire.twilio_wire import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN

ROOT = Path(__file__).resolve().parents[2]
DATABASE = "regnotify"
PG_PORT = 5432
REDIS_PORT = 6379
AMQP_PORT = 5672
RELAY_PORT = 8000
TWILIO_PORT = 8031
RESEND_PORT = 8032
RELAY_TOKEN = "cluster-relay-token-" + "x" * 16
TWILIO_FROM = "+15005550006"
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def _subnet() -> str:
    """10.A.B.0/24 from the pid and a random byte: one per run, private (RFC 1918)."""
    return f"10.{(os.getpid() >> 8) % 200 + 20}.{(os.getpid() + secrets.randbelow(256)) % 256}"


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str,
               every_s: float = 0.25) -> Any:
    """Poll `predicate` until truthy; AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_error = exc
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}"
                         + (f" (last error: {last_error})" if last_error else ""))


@dataclass
class Host:
    """One namespace with one address."""

    role: str
    ns: str
    addr: str
    port: str  # its veth end on the switch
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)


class NsWire:
    """A RemoteWire whose every call is made from the ctl host."""

    def __init__(self, ctl: str, url: str) -> None:
        self.url = url
        self._ctl = ctl
        self._remote = RemoteWire(url, timeout=20)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._remote, name)
        return lambda *a, **k: netns.run_in(self._ctl, method, *a, **k)

    def max_in_any_second(self) -> int:
        """Most send requests that arrived within any one second (one clock: the wire's)."""
        times = sorted(a.received_mono for a in self.attempts())
        best = start = 0
        for end, t in enumerate(times):
            while times[start] <= t - 1.0:
                start += 1
            best = max(best, end - start + 1)
        return best


class Cluster:
    """The hosts of one run; start services with the methods below, `close()` at the end."""

    ROLES = ("ctl", "pg", "broker", "w1", "w2", "w3", "relay", "prov")

    def __init__(self, log_dir: Path, roles: Iterable[str] = ROLES) -> None:
        netns.sweep_stale()
        self.log_dir = log_dir
        self.tag = f"{netns.PREFIX}{os.getpid()}x{secrets.token_hex(2)}"
        self.subnet = _subnet()
        self.switch = f"{self.tag}-sw"
        self.hosts: dict[str, Host] = {}
        self.state = Path(tempfile.mkdtemp(prefix="regnotify-cluster-"))
        self.state.chmod(0o755)  # the postgres user reaches its data folder
        self.env: dict[str, str] = {}
        self._closed = False
        atexit.register(self.close)
        try:
            netns.ip("netns", "add", self.switch)
            netns.ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            netns.ip("-n", self.switch, "link", "set", "br0", "up")
            for n, role in enumerate(roles, start=2):
                self._add_host(role, n)
        except BaseException:
            self.close()
            raise

    # ── network ─────────────────────────────────────────────────────────────

    def _add_host(self, role: str, n: int) -> None:
        ns, port, addr = f"{self.tag}-{role}", f"p{role}", f"{self.subnet}.{n}"
        netns.ip("netns", "add", ns)
        self.hosts[role] = Host(role, ns, addr, port)
        netns.ip("-n", self.switch, "link", "add", port, "type", "veth",
                 "peer", "name", "eth0", "netns", ns)
        netns.ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        netns.ip("-n", ns, "link", "set", "lo", "up")
        netns.ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
        netns.ip("-n", ns, "link", "set", "eth0", "up")

    def addr(self, role: str) -> str:
        """The host's address."""
        return self.hosts[role].addr

    def cut(self, role: str) -> None:
        """Partition: the host's port on the switch goes down; its packets vanish."""
        netns.ip("-n", self.switch, "link", "set", self.hosts[role].port, "down")

    def heal(self, role: str) -> None:
        """Reconnect the host."""
        netns.ip("-n", self.switch, "link", "set", self.hosts[role].port, "up")

    def kill_host(self, role: str) -> int:
        """SIGKILL every process in the host (its power cord pulled); how many."""
        return netns.kill_all_in(self.hosts[role].ns)

    def in_ctl(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call `fn` from the ctl host (its sockets live there)."""
        return netns.run_in(self.hosts["ctl"].ns, fn, *args, **kwargs)

    # ── processes ───────────────────────────────────────────────────────────

    def spawn(self, role: str, name: str, argv: list[str], env: dict[str, str] | None = None,
              user: str | None = None) -> subprocess.Popen[bytes]:
        """Start `argv` on host `role`, logging to <log_dir>/<name>.log."""
        host = self.hosts[role]
        proc = netns.popen_in(host.ns, argv, env={**os.environ, **(env or {})},
                              log=self.log_path(name), user=user, cwd=ROOT)
        host.procs[name] = proc
        return proc

    def log_path(self, name: str) -> Path:
        """Where process `name` writes."""
        return self.log_dir / f"{name}.log"

    def log(self, name: str) -> str:
        """A process's output."""
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    # ── PostgreSQL ──────────────────────────────────────────────────────────

    @property
    def database_url(self) -> str:
        """Superuser URL of the run's database, on the pg host."""
        return f"postgresql://postgres@{self.addr('pg')}:{PG_PORT}/{DATABASE}"

    def start_postgres(self) -> None:
        """initdb (as postgres), then the server in the pg host, listening on its address."""
        from db.install.migrations import migrate
        from tasks.local.embedded_postgres import EmbeddedPostgres

        data = self.state / "pg"
        cluster = EmbeddedPostgres(data_dir=data, port=PG_PORT, database=DATABASE)
        cluster.chown(self.state)
        cluster.init()
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {self.subnet}.0/24 trust\n")
        opts = cluster.server_options()
        opts[opts.index("listen_addresses=127.0.0.1")] = f"listen_addresses={self.addr('pg')}"
        opts += ["-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off"]
        assert cluster.bindir is not None
        self.spawn("pg", "postgres", [str(cluster.bindir / "postgres"), "-D", str(data), *opts],
                   user="postgres")
        wait_until(lambda: self.sql("SELECT 1"), 60, "PostgreSQL on its host")
        self.in_ctl(migrate, self.database_url)
        # Quiet hours off (a run at night would hold every text), as tests/conftest.py does.
        from tests.conftest import QUIET_HOURS_OFF
        self.sql(QUIET_HOURS_OFF)

    def sql(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        """Run one statement from the ctl host; its rows (empty for none)."""
        def go() -> list[dict[str, Any]]:
            with psycopg.connect(self.database_url, connect_timeout=5, autocommit=True,
                                 row_factory=dict_row) as conn:
                cur = conn.execute(query, params)
                return list(cur.fetchall()) if cur.description else []
        return self.in_ctl(go)

    # ── broker, providers, relay, workers ───────────────────────────────────

    @property
    def redis_url(self) -> str:
        """The broker host's Redis."""
        return f"redis://{self.addr('broker')}:{REDIS_PORT}/0"

    def start_redis(self) -> None:
        """redis-server on the broker host."""
        binary = shutil.which("redis-server") or "redis-server"
        self.spawn("broker", "redis", [binary, "--bind", self.addr("broker"), "--port",
                                       str(REDIS_PORT), "--protected-mode", "no", "--save", "",
                                       "--appendonly", "no", "--daemonize", "no"])
        import redis

        wait_until(lambda: self.in_ctl(
            lambda: redis.Redis.from_url(self.redis_url, socket_timeout=2).ping()),
            30, "Redis on the broker host")

    @property
    def amqp_url(self) -> str:
        """The broker host's RabbitMQ (guest, default vhost)."""
        return f"amqp://guest:guest@{self.addr('broker')}:{AMQP_PORT}//"

    def start_rabbitmq(self, timeout_s: float = 180.0) -> None:
        """rabbitmq-server on the broker host, its own node, cookie, epmd and files.

        Nothing is shared with a RabbitMQ the machine may run: HOME (the
        Erlang cookie), the data and log folders are the run's, and epmd
        starts inside the namespace (its own loopback).
        """
        base = self.state / "rabbitmq"
        for sub in ("mnesia", "log"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        (base / "rabbitmq.conf").write_text(
            "loopback_users = none\n"
            f"listeners.tcp.1 = {self.addr('broker')}:{AMQP_PORT}\n")
        (base / "enabled_plugins").write_text("[].\n")
        self.spawn("broker", "rabbitmq", [RABBITMQ_SERVER], {
            "HOME": str(base),
            "RABBITMQ_NODENAME": "rabbit@localhost",
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        })

        def connects() -> bool:
            import kombu

            with kombu.Connection(self.amqp_url, connect_timeout=3) as conn:
                conn.connect()
                return bool(conn.connected)

        wait_until(lambda: self.in_ctl(connects), timeout_s, "RabbitMQ on the broker host",
                   every_s=2)

    def start_wires(self, *, twilio_rps: float, resend_rps: float,
                    twilio_latency: float = 0.02, resend_latency: float = 0.05) -> None:
        """The Twilio and Resend stand-ins on the provider host, answering 429 above the rate."""
        for provider, port, rps, latency in (("twilio", TWILIO_PORT, twilio_rps, twilio_latency),
                                             ("resend", RESEND_PORT, resend_rps, resend_latency)):
            self.spawn("prov", provider, [
                sys.executable, "-m", "tests.wire", provider, "--host", self.addr("prov"),
                "--port", str(port), "--max-rps", str(rps), "--latency", str(latency), "--json"])
        self.twilio = NsWire(self.hosts["ctl"].ns, f"http://{self.addr('prov')}:{TWILIO_PORT}")
        self.resend = NsWire(self.hosts["ctl"].ns, f"http://{self.addr('prov')}:{RESEND_PORT}")
        for wire in (self.twilio, self.resend):
            wait_until(wire.health, 30, f"the wire {wire.url}")

    def app_env(self, broker_url: str, **extra: str) -> dict[str, str]:
        """What every regnotify process of the cluster runs with."""
        env = {
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": broker_url,
            "RELAY_TOKEN": RELAY_TOKEN,
            "SMS_PROVIDER": "twilio",
            "EMAIL_PROVIDER": "resend",
            "TWILIO_ACCOUNT_SID": DEFAULT_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": DEFAULT_AUTH_TOKEN,
            "TWILIO_FROM_NUMBER": TWILIO_FROM,
            "TWILIO_API_BASE_URL": self.twilio.url,
            "RESEND_API_KEY": DEFAULT_API_KEY,
            "RESEND_API_BASE_URL": self.resend.url,
            "EMAIL_FROM": "Lone Star Auto <registrations@lonestar.test>",
            "DEALERSHIP_NAME": "Lone Star Auto",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
        # Nothing from the machine's own set-up may point a process elsewhere.
        env.setdefault("COORDINATION_REDIS_URL", "")
        self.env = env
        return env

    def start_relay(self, env: dict[str, str], tick_s: float = 2.0) -> None:
        """`regnotify relay` on the relay host: LISTEN plus its own ticker every `tick_s`."""
        self.spawn("relay", "relay", [
            sys.executable, "-m", "tasks.cli", "relay", "--host", self.addr("relay"),
            "--port", str(RELAY_PORT), "--self-tick", "--tick-interval", str(tick_s),
            "--log-level", "info"], env)
        import urllib.request

        url = f"http://{self.addr('relay')}:{RELAY_PORT}/healthz"
        wait_until(lambda: self.in_ctl(lambda: urllib.request.urlopen(url, timeout=2).status)
                   == 200, 60, "the relay's /healthz")

    def start_workers(self, roles: Iterable[str], env: dict[str, str],
                      concurrency: int = 4, suffix: str = "") -> list[str]:
        """`celery -A tasks worker` on each host (all at once); their names, once ready."""
        started = self.spawn_workers(roles, env, concurrency, suffix)
        self.wait_workers(started)
        return list(started)

    def spawn_workers(self, roles: Iterable[str], env: dict[str, str], concurrency: int = 4,
                      suffix: str = "") -> dict[str, tuple[str, int]]:
        """Start the workers without waiting; {name: (host, log offset)} for `wait_workers`."""
        started = {}
        for role in roles:
            name = f"worker-{role}{suffix}"
            started[name] = (role, len(self.log(name)))
            self.spawn(role, name, [sys.executable, "-m", "celery", "-A", "tasks", "worker",
                                    "-c", str(concurrency), "-l", "info",
                                    "-n", f"{name}@%h"], env)
        return started

    def wait_workers(self, started: dict[str, tuple[str, int]]) -> None:
        """Until every worker `spawn_workers` started logs that it is ready."""
        for name, (role, offset) in started.items():
            wait_until(lambda n=name, r=role, o=offset: " ready." in self.log(n)[o:]
                       or self._exited(r, n), 120, f"{name} ready")
            if self._exited(role, name):
                raise AssertionError(f"{name} exited:\n{self.log(name)[-4000:]}")

    def _exited(self, role: str, name: str) -> bool:
        return self.hosts[role].procs[name].poll() is not None

    def stop(self, role: str, name: str, timeout: float = 20.0) -> None:
        """SIGTERM (a warm shutdown), then SIGKILL."""
        proc = self.hosts[role].procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    # ── the end ─────────────────────────────────────────────────────────────

    def close(self) -> None:
        """Stop every process, remove every namespace and the state folder (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for host in self.hosts.values():
            for proc in host.procs.values():
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, 9)
            netns.delete(host.ns)
            for proc in host.procs.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
        netns.delete(self.switch)
        shutil.rmtree(self.state, ignore_errors=True)
        atexit.unregister(self.close)

    def summary(self) -> str:
        """The hosts and addresses, for a failing test's output."""
        return json.dumps({r: h.addr for r, h in self.hosts.items()})
