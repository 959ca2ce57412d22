"""docker-compose.yml, Dockerfile, Procfile and .env.example, checked without Docker.

Docker cannot run here, so the compose file is loaded and its services,
images, commands, dependencies, health checks, ports and environment are
asserted; every command that runs regnotify or Celery is resolved against the
real CLI (parsed by regnotify's own argument parser and run with --help).

PyYAML is not a dependency of the project. When it is importable it loads
the file; otherwise `load_yaml_subset` below does: a strict loader for the
subset of YAML this compose file uses, which refuses anything else (anchors,
tags, flow mappings, YAML 1.1 yes/no booleans) rather than guess.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

APP_SERVICES = ("migrate", "worker", "relay", "flower")
LONG_RUNNING = ("db", "redis", "worker", "relay", "flower")


# ── A strict loader for the YAML subset compose files need ───────────────────


class YamlSubsetError(ValueError):
    """The text uses YAML this loader does not support (or is not YAML)."""


_PLAIN_INT = re.compile(r"^[-+]?\d+$")
_PLAIN_FLOAT = re.compile(r"^[-+]?\d+\.\d+$")
# YAML 1.1 (PyYAML) reads these as booleans, YAML 1.2 (Compose) as strings.
_AMBIGUOUS = {"y", "n", "yes", "no", "on", "off"}


def load_yaml_subset(text: str) -> Any:
    """Block mappings and sequences, `|` block scalars, one-line flow sequences, scalars."""
    return _Loader(text).document()


class _Loader:
    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.i = 0

    def fail(self, message: str) -> YamlSubsetError:
        return YamlSubsetError(f"line {self.i + 1}: {message}")

    def current(self) -> tuple[int, str] | None:
        """(indent, content) of the next line that is not blank or a comment."""
        while self.i < len(self.lines):
            raw = self.lines[self.i]
            stripped = raw.strip()
            if stripped and not stripped.startswith("#"):
                if "\t" in raw[: len(raw) - len(raw.lstrip())]:
                    raise self.fail("tab in indentation")
                return len(raw) - len(raw.lstrip(" ")), stripped
            self.i += 1
        return None

    def document(self) -> Any:
        first = self.current()
        if first is None:
            return None
        if first[1].startswith(("---", "%")):
            raise self.fail("document markers and directives are not supported")
        value = self.block(first[0])
        if self.current() is not None:
            raise self.fail("unexpected content after the document")
        return value

    def block(self, indent: int) -> Any:
        line = self.current()
        assert line is not None
        if _is_item(line[1]):
            return self.sequence(indent)
        return self.mapping(indent)

    def mapping(self, indent: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        while (line := self.current()) is not None:
            ind, content = line
            if ind < indent or (ind == indent and _is_item(content)):
                break
            if ind > indent:
                raise self.fail("unexpected indentation")
            key, rest = self.split_key(content)
            if key in result:
                raise self.fail(f"duplicate key {key!r}")
            self.i += 1
            rest = _strip_comment(rest)
            if rest == "":
                nxt = self.current()
                if nxt and (nxt[0] > indent or (nxt[0] == indent and _is_item(nxt[1]))):
                    result[key] = self.block(nxt[0])
                else:
                    result[key] = None
            elif rest in ("|", "|-"):
                result[key] = self.block_scalar(indent, keep_newline=rest == "|")
            else:
                result[key] = self.inline(rest)
        return result

    def sequence(self, indent: int) -> list[Any]:
        items: list[Any] = []
        while (line := self.current()) is not None:
            ind, content = line
            if ind < indent or not _is_item(content):
                break
            if ind > indent:
                raise self.fail("unexpected indentation")
            rest = content[1:].lstrip(" ")
            offset = ind + len(content) - len(rest)
            if rest == "":
                self.i += 1
                nxt = self.current()
                items.append(self.block(nxt[0]) if nxt and nxt[0] > indent else None)
            elif rest in ("|", "|-"):
                self.i += 1
                items.append(self.block_scalar(indent, keep_newline=rest == "|"))
            elif _looks_like_key(rest):
                # "- key: value" opens a mapping indented where "key" starts.
                self.lines[self.i] = " " * offset + rest
                items.append(self.mapping(offset))
            else:
                self.i += 1
                items.append(self.inline(_strip_comment(rest)))
        return items

    def block_scalar(self, parent_indent: int, *, keep_newline: bool) -> str:
        collected: list[str] = []
        block_indent: int | None = None
        while self.i < len(self.lines):
            raw = self.lines[self.i]
            if raw.strip() == "":
                collected.append("")
                self.i += 1
                continue
            ind = len(raw) - len(raw.lstrip(" "))
            if ind <= parent_indent:
                break
            if block_indent is None:
                block_indent = ind
            if ind < block_indent:
                raise self.fail("block scalar line indented less than its first line")
            collected.append(raw[block_indent:])
            self.i += 1
        while collected and collected[-1] == "":
            collected.pop()
        body = "\n".join(collected)
        return body + "\n" if keep_newline and body else body

    def split_key(self, content: str) -> tuple[str, str]:
        if content[0] in "\"'":
            key, end = _quoted(content, 0)
            rest = content[end:]
            if not rest.startswith(":"):
                raise self.fail("expected ':' after a quoted key")
            return key, rest[1:].strip()
        match = re.match(r"^([^\s:#][^:#]*?)\s*:(?:\s+|$)(.*)$", content)
        if not match:
            raise self.fail(f"expected 'key: value', got {content!r}")
        return match.group(1), match.group(2).strip()

    def inline(self, text: str) -> Any:
        if text[0] in "&*!|>%@`{":
            if text == "{}":
                return {}
            raise self.fail(f"unsupported YAML: {text!r}")
        if text[0] in "\"'":
            value, end = _quoted(text, 0)
            if _strip_comment(text[end:]) != "":
                raise self.fail(f"text after a quoted scalar: {text!r}")
            return value
        if text[0] == "[":
            return self.flow_sequence(text)
        return self.plain(text)

    def flow_sequence(self, text: str) -> list[Any]:
        items: list[Any] = []
        pos = 1
        while True:
            while pos < len(text) and text[pos] == " ":
                pos += 1
            if pos >= len(text):
                raise self.fail("unterminated flow sequence (must fit on one line)")
            if text[pos] == "]" and not items:
                pos += 1
                break
            if text[pos] in "\"'":
                value, pos = _quoted(text, pos)
                items.append(value)
            elif text[pos] in "[{":
                raise self.fail("nested flow collections are not supported")
            else:
                end = pos
                while end < len(text) and text[end] not in ",]":
                    end += 1
                items.append(self.plain(text[pos:end].strip()))
                pos = end
            while pos < len(text) and text[pos] == " ":
                pos += 1
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            if pos < len(text) and text[pos] == "]":
                pos += 1
                break
            raise self.fail(f"bad flow sequence: {text!r}")
        if _strip_comment(text[pos:]) != "":
            raise self.fail(f"text after a flow sequence: {text!r}")
        return items

    def plain(self, text: str) -> Any:
        if text in ("", "~", "null", "Null", "NULL"):
            return None
        if text in ("true", "True", "TRUE"):
            return True
        if text in ("false", "False", "FALSE"):
            return False
        if text.lower() in _AMBIGUOUS:
            raise self.fail(f"quote {text!r}: YAML 1.1 reads it as a boolean")
        if _PLAIN_INT.match(text):
            return int(text)
        if _PLAIN_FLOAT.match(text):
            return float(text)
        if ": " in text or text.endswith(":"):
            raise self.fail(f"ambiguous plain scalar {text!r}")
        return text


def _is_item(content: str) -> bool:
    return content == "-" or content.startswith("- ")


def _looks_like_key(text: str) -> bool:
    return text[0] not in "\"'[{" and re.match(r"^[^\s:#][^:#]*?:(\s|$)", text) is not None


def _strip_comment(text: str) -> str:
    """Drop a trailing ' # comment' outside quotes."""
    quote = None
    for pos, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'" and (pos == 0 or text[pos - 1] in " [,"):
            quote = ch
        elif ch == "#" and (pos == 0 or text[pos - 1] in " \t"):
            return text[:pos].rstrip()
    return text.strip()


_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "/": "/", "0": "\0"}


def _quoted(text: str, start: int) -> tuple[str, int]:
    """A quoted scalar starting at `start`: (value, index after the closing quote)."""
    quote = text[start]
    out: list[str] = []
    pos = start + 1
    while pos < len(text):
        ch = text[pos]
        if quote == "'" and ch == "'":
            if text[pos + 1: pos + 2] == "'":
                out.append("'")
                pos += 2
                continue
            return "".join(out), pos + 1
        if quote == '"' and ch == "\\":
            nxt = text[pos + 1: pos + 2]
            if nxt not in _ESCAPES:
                raise YamlSubsetError(f"unsupported escape \\{nxt} in {text!r}")
            out.append(_ESCAPES[nxt])
            pos += 2
            continue
        if quote == '"' and ch == '"':
            return "".join(out), pos + 1
        out.append(ch)
        pos += 1
    raise YamlSubsetError(f"unterminated quoted scalar: {text!r}")


def load_yaml(path: Path) -> Any:
    """PyYAML when installed, else the strict subset loader."""
    text = path.read_text(encoding="utf-8")
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        return load_yaml_subset(text)
    return yaml.safe_load(text)


def test_subset_loader_reads_what_it_claims_and_refuses_the_rest():
    doc = load_yaml_subset(
        "a:\n"
        "  b: 1  # comment\n"
        "  c: \"x # not a comment\"\n"
        "  d: ['p', \"q\", r]\n"
        "  e:\n"
        "    - s\n"
        "    - t: u\n"
        "      v: w\n"
        "  f: |\n"
        "    one\n"
        "\n"
        "    two\n"
        "  g:\n"
        "  h: 'it''s'\n"
        "list:\n"
        "- 1\n"
        "- |\n"
        "  script\n"
        "x: [\"a, b\", 'c']\n"
    )
    assert doc == {
        "a": {"b": 1, "c": "x # not a comment", "d": ["p", "q", "r"],
              "e": ["s", {"t": "u", "v": "w"}], "f": "one\n\ntwo\n", "g": None, "h": "it's"},
        "list": [1, "script\n"],
        "x": ["a, b", "c"],
    }
    for bad in ("a: &anchor 1\n", "a: *anchor\n", "a: !tag x\n", "a: no\n", "a: {b: 1}\n",
                "a:\n\tb: 1\n", "a: 1\na: 2\n", "a: [1,\n  2]\n"):
        with pytest.raises(YamlSubsetError):
            load_yaml_subset(bad)


def test_subset_loader_agrees_with_pyyaml_on_the_compose_file():
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed; nothing to compare")
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    assert load_yaml_subset(text) == yaml.safe_load(text)


# ── docker-compose.yml ───────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = load_yaml(ROOT / "docker-compose.yml")
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _argv(command: Any) -> list[str]:
    """A compose command as an argv list (compose splits a string like a shell would)."""
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} and $$ (minimal, for the checks)."""
    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op == ":-":
            return arg
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return ""

    return re.sub(r"\$\$|\$\{(\w+)(?:(:[-?])([^}]*))?\}", sub, value)


def test_the_six_services(services):
    assert set(services) == {"db", "redis", "migrate", "worker", "relay", "flower"}


def test_db_is_a_pinned_supabase_postgres_15_with_pg_cron_on_the_app_database(services):
    db = services["db"]
    assert re.fullmatch(r"supabase/postgres:15\.\d+\.\d+\.\d+", db["image"]), db["image"]
    argv = _argv(db["command"])
    assert argv[0] == "postgres"
    settings = [argv[i + 1] for i, a in enumerate(argv) if a == "-c"]
    assert "config_file=/etc/postgresql/postgresql.conf" in settings
    assert "cron.database_name=${POSTGRES_DB:-postgres}" in settings
    # The database the app connects to is the one pg_cron serves.
    assert services["worker"]["environment"]["DATABASE_URL"].endswith(
        "@db:5432/${POSTGRES_DB:-postgres}")
    assert db["environment"]["POSTGRES_DB"] == "${POSTGRES_DB:-postgres}"
    assert db["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert any(v.endswith(":/var/lib/postgresql/data") for v in db["volumes"])
    assert _argv(db["healthcheck"]["test"])[:2] == ["CMD", "pg_isready"]
    # Published on loopback only.
    assert all(p.startswith("127.0.0.1:") for p in db["ports"])


def test_redis(services):
    redis = services["redis"]
    assert redis["image"] == "redis:7-alpine"
    assert _argv(redis["healthcheck"]["test"]) == ["CMD", "redis-cli", "ping"]


def test_app_services_share_one_image_built_here_with_env_from_dotenv(services):
    images = {services[name]["image"] for name in APP_SERVICES}
    assert len(images) == 1
    for name in APP_SERVICES:
        service = services[name]
        assert service["build"] == ".", name
        assert service["env_file"] == ".env", name
        env = service["environment"]
        assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0", name
        if name != "flower":
            assert env["DATABASE_URL"].startswith("postgresql://postgres:${POSTGRES_PASSWORD"), name
            assert "@db:5432/" in env["DATABASE_URL"], name


def test_dockerfile_builds_the_app_on_python_311_slim():
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\s*$", dockerfile, re.MULTILINE)
    assert re.search(r"^RUN pip install \.", dockerfile, re.MULTILINE)
    for path in ("pyproject.toml", "README.md", "db", "tasks", "sql"):
        assert re.search(rf"^COPY .*\b{re.escape(path)}\b", dockerfile, re.MULTILINE), path
        assert (ROOT / path).exists(), path
    # The migrate service runs psql after the migrations.
    assert "postgresql-client" in dockerfile


def test_restart_policies(services):
    for name in LONG_RUNNING:
        assert services[name]["restart"] == "unless-stopped", name
    assert services["migrate"]["restart"] in ("no", "on-failure")


def test_health_checks_on_every_long_running_service(services):
    for name in LONG_RUNNING:
        check = services[name]["healthcheck"]
        test = _argv(check["test"])
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
        assert re.fullmatch(r"\d+s", check["interval"]), name
        assert isinstance(check["retries"], int) and check["retries"] >= 1, name
    relay = " ".join(_argv(services["relay"]["healthcheck"]["test"]))
    assert "http://127.0.0.1:8000/healthz" in relay
    flower = " ".join(_argv(services["flower"]["healthcheck"]["test"]))
    assert "http://127.0.0.1:5555/healthcheck" in flower
    worker = " ".join(_argv(services["worker"]["healthcheck"]["test"]))
    assert "celery -A tasks inspect ping -d celery@$$HOSTNAME --timeout" in worker
    done = subprocess.run([str(BIN / "celery"), "-A", "tasks", "inspect", "--help"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "--destination" in done.stdout and "--timeout" in done.stdout


def test_dependencies_wait_for_health_and_for_the_migration(services):
    allowed = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        for target, spec in (service.get("depends_on") or {}).items():
            assert target in services, (name, target)
            assert spec["condition"] in allowed, (name, target)
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[target], (name, target)
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    for name in ("worker", "relay"):
        deps = services[name]["depends_on"]
        assert deps["db"] == {"condition": "service_healthy"}, name
        assert deps["redis"] == {"condition": "service_healthy"}, name
        assert deps["migrate"] == {"condition": "service_completed_successfully"}, name
    assert services["flower"]["depends_on"]["redis"] == {"condition": "service_healthy"}


def test_ports(services):
    assert services["relay"]["ports"] == ["8000:8000"]
    assert services["flower"]["ports"] == ["5555:5555"]
    for name in ("redis", "migrate", "worker"):
        assert "ports" not in services[name], name


def test_migrate_applies_migrations_then_points_notification_tick_at_the_relay(services):
    argv = _argv(services["migrate"]["command"])
    assert argv[:2] == ["sh", "-ec"]
    script = _interpolate(argv[2], {"POSTGRES_PASSWORD": "pw"})
    lines = [line.strip() for line in script.splitlines()]
    assert lines.index("regnotify migrate") < next(
        i for i, line in enumerate(lines) if line.startswith("psql "))
    assert "UPDATE public.notification_config" in script
    assert "relay_url = :'url'" in script and "relay_token = :'token'" in script
    assert '-v url="$RELAY_INTERNAL_URL"' in script and '-v token="$RELAY_TOKEN"' in script
    assert '"${RELAY_TOKEN:?' in script
    # pg_net runs inside the db container: the relay is reached by its service name.
    assert services["migrate"]["environment"]["RELAY_INTERNAL_URL"] == (
        "${RELAY_INTERNAL_URL:-http://relay:8000}")


def test_migrate_script_runs_under_sh(tmp_path, services):
    """Run the script with stand-ins for regnotify and psql: order, quoting, heredoc."""
    script = _interpolate(_argv(services["migrate"]["command"])[2], {"POSTGRES_PASSWORD": "pw"})
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    log = tmp_path / "log"
    (fake_bin / "regnotify").write_text(f'#!/bin/sh\necho "regnotify $*" >> {log}\n')
    (fake_bin / "psql").write_text(f'#!/bin/sh\necho "psql $*" >> {log}\ncat >> {log}\n')
    for tool in ("regnotify", "psql"):
        (fake_bin / tool).chmod(0o755)
    env = {"PATH": f"{fake_bin}:/usr/bin:/bin", "DATABASE_URL": "postgresql://x@db/postgres",
           "RELAY_INTERNAL_URL": "http://relay:8000", "RELAY_TOKEN": "tok en's"}
    done = subprocess.run(["sh", "-ec", script], env=env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    calls = log.read_text()
    assert calls.startswith("regnotify migrate\npsql postgresql://x@db/postgres ")
    assert "url=http://relay:8000" in calls and "token=tok en's" in calls
    assert "SET relay_url = :'url', relay_token = :'token'" in calls
    assert "notification_tick() will POST http://relay:8000/tick" in done.stdout

    env.pop("RELAY_TOKEN")
    refused = subprocess.run(["sh", "-ec", script], env=env, capture_output=True, text=True,
                             timeout=30)
    assert refused.returncode != 0 and "RELAY_TOKEN is not set" in refused.stderr


def test_flower_requires_basic_auth(services):
    flower = services["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    with pytest.raises(KeyError, match="FLOWER_BASIC_AUTH"):
        _interpolate(flower["environment"]["FLOWER_BASIC_AUTH"], {})


def test_flower_reads_basic_auth_from_its_environment(monkeypatch):
    """Compose passes FLOWER_BASIC_AUTH as an environment variable; Flower takes it as
    --basic-auth (flower.command.apply_env_options), so it is not on the command line."""
    from flower.command import apply_env_options
    from tornado.options import options

    saved = options.basic_auth
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "admin:secret,ops:other")
    try:
        apply_env_options()
        assert options.basic_auth == ["admin:secret", "ops:other"]
    finally:
        options.basic_auth = saved


# ── Commands resolve to the real CLI ─────────────────────────────────────────


def _regnotify_parser() -> argparse.ArgumentParser:
    from tasks.cli.main import build_parser

    return build_parser()


def _check_regnotify(argv: list[str]) -> argparse.Namespace:
    """Parse with regnotify's own parser (unknown options fail) and run `--help` for real."""
    assert argv[0] == "regnotify"
    args = _regnotify_parser().parse_args(argv[1:])
    done = subprocess.run([str(BIN / "regnotify"), argv[1], "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"usage: regnotify {argv[1]}" in done.stdout
    return args


def _check_celery_flower(argv: list[str]) -> None:
    """`celery -A tasks flower ...`: the app imports and every option is a Flower option."""
    assert argv[:4] == ["celery", "-A", "tasks", "flower"]
    import flower.options  # noqa: F401  (defines Flower's options on tornado's registry)
    from tornado.options import options

    for arg in argv[4:]:
        assert arg.startswith("--"), arg
        name = arg[2:].split("=", 1)[0].replace("-", "_")
        assert name in options._options or name.replace("_", "-") in options._options, arg
    done = subprocess.run([str(BIN / "celery"), "-A", "tasks", "flower", "--help"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "Usage: celery flower" in done.stdout


def test_compose_commands_resolve(services):
    worker = _check_regnotify(_argv(services["worker"]["command"]))
    assert worker.command == "worker"
    relay = _check_regnotify(_argv(services["relay"]["command"]))
    assert (relay.command, relay.host, relay.port) == ("relay", "0.0.0.0", 8000)
    _check_celery_flower(_argv(services["flower"]["command"]))
    assert "--port=5555" in _argv(services["flower"]["command"])
    # The migrate script's regnotify step.
    _check_regnotify(["regnotify", "migrate"])


# ── Procfile ─────────────────────────────────────────────────────────────────

# honcho's own Procfile line pattern (honcho/environ.py): other lines are ignored.
_PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_]+):\s*(.+)$")


@pytest.fixture(scope="module")
def procfile() -> dict[str, str]:
    entries: dict[str, str] = {}
    for line in (ROOT / "Procfile").read_text(encoding="utf-8").splitlines():
        match = _PROCFILE_LINE.match(line)
        if match:
            assert match.group(1) not in entries, f"duplicate process {match.group(1)}"
            entries[match.group(1)] = match.group(2)
        else:
            assert line == "" or line.startswith("#"), f"line honcho would ignore: {line!r}"
    return entries


def _shell_words(command: str, env: dict[str, str]) -> list[str]:
    """The argv /bin/sh builds from `command` (honcho runs each with a shell)."""
    sh = shutil.which("sh")
    assert sh
    done = subprocess.run(
        [sh, "-c", f"for a in {command}; do printf '%s\\0' \"$a\"; done"],
        env={"PATH": os.environ.get("PATH", ""), **env}, capture_output=True, text=True,
        timeout=10,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip())
    return done.stdout.split("\0")[:-1]


def test_procfile_has_worker_relay_and_flower(procfile):
    assert list(procfile) == ["worker", "relay", "flower"]


def test_procfile_commands_resolve(procfile):
    # honcho sets PORT per process type (5000, 5100, ...): the relay must not follow it.
    env = {"PORT": "5100", "FLOWER_BASIC_AUTH": "admin:pw"}
    worker = _check_regnotify(_shell_words(procfile["worker"], env))
    assert worker.command == "worker"

    relay_argv = _shell_words(procfile["relay"], env)
    relay = _check_regnotify(relay_argv)
    assert (relay.command, relay.host, relay.port) == ("relay", "0.0.0.0", 8000)
    relay = _regnotify_parser().parse_args(_shell_words(procfile["relay"],
                                                        {**env, "RELAY_PORT": "8100"})[1:])
    assert relay.port == 8100

    guard, _, command = procfile["flower"].partition(" && exec ")
    flower_argv = _shell_words(command, env)
    _check_celery_flower(flower_argv)
    assert "--port=5555" in flower_argv
    # The password stays off the command line (`ps`): Flower reads it from
    # FLOWER_BASIC_AUTH (test_flower_reads_basic_auth_from_its_environment).
    assert "basic" not in procfile["flower"].replace("FLOWER_BASIC_AUTH", "")
    assert guard.startswith("test -n ")


def test_procfile_flower_refuses_to_start_without_basic_auth(procfile):
    sh = shutil.which("sh")
    assert sh
    guard, _, _ = procfile["flower"].partition(" && exec ")
    refused = subprocess.run([sh, "-c", guard], env={}, capture_output=True, text=True,
                             timeout=10)
    assert refused.returncode != 0 and "set FLOWER_BASIC_AUTH" in refused.stderr
    # A password with spaces or shell characters passes the guard.
    passed = subprocess.run([sh, "-c", guard], env={"FLOWER_BASIC_AUTH": "admin:p w$x;y"},
                            capture_output=True, text=True, timeout=10)
    assert passed.returncode == 0, passed.stderr


# ── .env.example ─────────────────────────────────────────────────────────────


def _env_example_lines() -> list[str]:
    return (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()


def _assignments(lines: list[str]) -> dict[str, tuple[str, bool]]:
    """{NAME: (raw value, enabled)} for `NAME=value` and `# NAME=value` lines."""
    found: dict[str, tuple[str, bool]] = {}
    for line in lines:
        match = re.match(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            name = match.group(2)
            assert name not in found, f"{name} appears twice"
            found[name] = (match.group(3), match.group(1) is None)
    return found


def test_env_example_names_every_setting_with_a_comment():
    from tasks.settings import Settings

    lines = _env_example_lines()
    assignments = _assignments(lines)
    for name in Settings.model_fields:
        assert name.upper() in assignments, f"{name.upper()} is missing from .env.example"
    for index, line in enumerate(lines):
        if re.match(r"^(#\s*)?[A-Z][A-Z0-9_]*=", line):
            above = lines[index - 1]
            assert above.startswith("# ") and "=" not in above.split()[1], (
                f"{line!r} has no comment of its own above it")


def test_env_example_covers_every_variable_compose_and_the_procfile_read(services):
    names = set(_assignments(_env_example_lines()))
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    text += (ROOT / "Procfile").read_text(encoding="utf-8")
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", text)) - {"HOSTNAME", "PORT"}
    assert used <= names, used - names


def test_env_example_loads_into_settings_and_honcho_reads_every_line(monkeypatch):
    from tasks.settings import Settings

    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    settings = Settings(_env_file=ROOT / ".env.example")
    # Safe by default: nothing is sent anywhere until real providers are chosen.
    assert settings.sms_provider_name() == "console"
    assert settings.email_provider_name() == "console"
    assert settings.database_url is None  # `regnotify up` then starts its own

    enabled = {k: v for k, (v, on) in _assignments(_env_example_lines()).items() if on}
    for name, value in enabled.items():
        # honcho's .env parser (shlex with these extra word characters) drops
        # lines it cannot split into exactly NAME = value.
        lexer = shlex.shlex(f"{name}={value}", posix=True)
        lexer.wordchars += "/.+-():"
        assert len(list(lexer)) == 3, f"honcho would ignore {name}={value}"


def test_env_example_holds_no_secrets():
    secret_names = ("PASSWORD", "TOKEN", "SECRET", "KEY", "AUTH", "SID")
    for name, (value, _) in _assignments(_env_example_lines()).items():
        if any(part in name for part in secret_names):
            assert "change" in value.lower() or re.fullmatch(r"(AC|MG|VA)x+", value), (name, value)
