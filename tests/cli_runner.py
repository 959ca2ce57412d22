"""Run `regnotify` commands in-process from tests and read what they print."""

from __future__ import annotations

import pytest


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run `regnotify ARGV` in-process; (exit status, stdout, stderr)."""
    from tasks.cli.main import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err
