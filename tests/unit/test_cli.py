"""What a newcomer reads from the `windpark` command: its help, and how `make run` says to
reach it (the virtualenv is not on the PATH)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from windpark import cli, localrun

ROOT = Path(__file__).resolve().parents[2]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_windpark_help_speaks_to_users_not_to_its_developers() -> None:
    parser = cli.build_parser()
    text = parser.format_help()
    for internal in ("composition root", "lazily", "import", "module"):
        assert internal not in text, internal
    for name in _subcommands(parser):
        assert name in text


def test_backfill_help_says_where_the_history_ends() -> None:
    text = _subcommands(cli.build_parser())["backfill"].format_help()
    flat = " ".join(text.split())
    assert "default: now" not in flat
    assert "the oldest stored reading, or now when there is none" in flat
    assert "running it again extends the history further back" in flat


def test_make_run_hint_and_readme_agree_on_reaching_the_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As `make run` runs it: the project's .venv, from the project's folder.
    monkeypatch.setattr(sys, "executable", str(ROOT / ".venv" / "bin" / "python"))
    monkeypatch.chdir(ROOT)
    hint = localrun.cli_help()
    activate = re.search(r"(\. \S+/activate)", hint)
    direct = re.search(r"(\S+/windpark) --help", hint)
    assert activate is not None, hint
    assert direct is not None, hint
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"`{activate.group(1)}`" in readme
    assert f"`{direct.group(1)} …`" in readme


def test_the_command_is_where_the_hint_says() -> None:
    # The running interpreter's virtualenv (the project's, under `make test`).
    hint = localrun.cli_help()
    direct = re.search(r"(\S+/windpark) --help", hint)
    assert direct is not None
    done = subprocess.run(
        [direct.group(1), "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: windpark")
