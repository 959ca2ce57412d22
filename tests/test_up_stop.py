"""`regnotify up` always stops what it started: under a dead pipe, a Ctrl-C to the whole
process group, or after it was killed outright (the next `up` clears what is left)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.local.child_processes import ChildProcesses
from tasks.local.embedded_postgres import free_port, port_in_use
from tests.up_process import STACK_ENV, Up, assert_stopped_cleanly, http_status

pytestmark = pytest.mark.e2e

NAMES = ("postgres", "redis", "relay", "flower")


def _argv(ports: dict[str, int]) -> list[str]:
    argv = [sys.executable, "-m", "tasks.cli", "up", "--concurrency", "2"]
    for name, port in ports.items():
        argv += [f"--{name}-port", str(port)]
    return argv


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in STACK_ENV}


def _wait_up(root: Path, ports: dict[str, int], proc: subprocess.Popen, timeout: float = 120
             ) -> dict[str, int]:
    """Until the relay answers and Flower is started; the pids up recorded."""
    deadline = time.monotonic() + timeout
    pids_file = root / ".regnotify" / "up.pids"
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"up exited ({proc.returncode})"
        if pids_file.exists():
            pids = {k: v["pid"] for k, v in json.loads(pids_file.read_text()).items()}
            if "flower" in pids and port_in_use(ports["flower"]) and port_in_use(
                    ports["relay"]) and http_status(
                    f"http://127.0.0.1:{ports['relay']}/healthz") == 200:
                return pids
        time.sleep(0.3)
    raise AssertionError("up did not come up")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _assert_nothing_left(root: Path, ports: dict[str, int], pids: dict[str, int]) -> None:
    assert not [name for name, pid in pids.items() if _alive(pid)], pids
    assert not [name for name, port in ports.items() if port_in_use(port)]
    assert not (root / ".regnotify" / "postgres" / "postmaster.pid").exists()
    assert not (root / ".regnotify" / "up.env").exists()
    assert not (root / ".regnotify" / "up.pids").exists()


def _next_up_starts(root: Path, ports: dict[str, int]) -> str:
    again = Up(root, ports)
    try:
        again.wait_for("regnotify is up")
    finally:
        assert_stopped_cleanly(again, ports, root)
    return again.output()


def test_up_stops_everything_when_its_pipe_reader_died(state_root: Path):
    ports = {name: free_port() for name in NAMES}
    # `regnotify up 2>up.err | tee up.log`, with tee as the reader.
    with (state_root / "up.log").open("wb") as log:
        tee = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=log)
    assert tee.stdin is not None
    with (state_root / "up.err").open("wb") as err:
        proc = subprocess.Popen(_argv(ports), cwd=state_root, env=_env(), stdout=tee.stdin,
                                stderr=err)
    tee.stdin.close()
    try:
        pids = _wait_up(state_root, ports, proc)
        tee.kill()  # killed by the same Ctrl-C, first: every write of up's now fails
        tee.wait()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(40) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    errors = (state_root / "up.err").read_text(errors="replace")
    assert "Traceback" not in errors and "BrokenPipe" not in errors, errors
    _assert_nothing_left(state_root, ports, pids)
    _next_up_starts(state_root, ports)


def test_ctrl_c_to_the_process_group_stops_in_order_without_a_traceback(state_root: Path):
    ports = {name: free_port() for name in NAMES}
    log = state_root / "up.log"
    with log.open("wb") as out:
        # Its own group, as a shell gives a foreground job: the terminal's
        # Ctrl-C is a SIGINT to every process in that group.
        proc = subprocess.Popen(_argv(ports), cwd=state_root, env=_env(), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        pids = _wait_up(state_root, ports, proc)
        # Flower's login is in its environment, not on its command line for `ps`.
        password = json.loads((state_root / ".regnotify" / "secrets.json").read_text())[
            "flower_password"]
        cmdline = Path(f"/proc/{pids['flower']}/cmdline").read_bytes().decode()
        assert "flower" in cmdline and password not in cmdline and "basic-auth" not in cmdline
        time.sleep(2)  # the worker connected and idle
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(40) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-5000:]
    # Redis outlived the worker: no lost broker while stopping.
    assert "Connection to broker lost" not in text, text[-5000:]
    assert "Inspect method" not in text
    assert "--basic-auth" not in text
    tail = text[text.index("up       | stopping ..."):]
    assert tail.rstrip().endswith("up       | stopped"), tail
    _assert_nothing_left(state_root, ports, pids)


def test_the_next_up_stops_what_a_killed_up_left_running(state_root: Path):
    ports = {name: free_port() for name in NAMES}
    with (state_root / "up.log").open("wb") as out:
        proc = subprocess.Popen(_argv(ports), cwd=state_root, env=_env(), stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        pids = _wait_up(state_root, ports, proc)
        proc.kill()  # no cleanup at all: children, Redis and PostgreSQL keep running
        proc.wait()
        assert all(_alive(pid) for pid in pids.values())
        assert port_in_use(ports["relay"]) and port_in_use(ports["postgres"])
        out = _next_up_starts(state_root, ports)
    finally:
        for pid in pids.values():
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)
    assert f"an earlier up in {state_root / '.regnotify'} did not stop" in out
    assert "an earlier up left PostgreSQL running" in out
    assert not [name for name, pid in pids.items() if _alive(pid)]


def test_a_child_that_ignores_sigterm_is_killed_after_its_bound(tmp_path: Path):
    children = ChildProcesses(open(os.devnull, "w"))  # noqa: SIM115
    stubborn = children.start("flower", [sys.executable, "-c", (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)")], dict(os.environ))
    polite = children.start("worker", [sys.executable, "-c", "import time; time.sleep(60)"],
                            dict(os.environ))
    time.sleep(0.5)
    started = time.monotonic()
    children.stop_all({"flower": 1.0, "worker": 5.0})
    assert time.monotonic() - started < 4
    assert stubborn.proc is not None and stubborn.proc.returncode == -signal.SIGKILL
    assert polite.proc is not None and polite.proc.returncode == -signal.SIGTERM


def test_a_dead_output_never_raises(tmp_path: Path):
    read_end, write_end = os.pipe()
    os.close(read_end)
    out = os.fdopen(write_end, "w")
    children = ChildProcesses(out)
    children.say("up", "stopping ...")  # EPIPE: dropped, not raised
    children.say("up", "stopped")
    assert children.output_lost
