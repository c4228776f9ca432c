"""The project's own CI runs what the README tells a newcomer to run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _commands(text: str) -> list[str]:
    return re.findall(r"```bash\n(python3 -m venv .venv && [^\n]+)\n```", text)


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    main_job, tests = _commands((ROOT / "README.md").read_text())[:2]
    assert main_job.endswith(".venv/bin/python -m framework")
    assert "ruff check ." in tests and "ruff format --check ." in tests
    assert tests.endswith(".venv/bin/python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci
