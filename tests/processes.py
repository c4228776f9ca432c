"""A long-running command whose output is read as it comes (e.g. `task=serve`)."""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any


def follow(proc: subprocess.Popen[str]) -> list[str]:
    """Collect ``proc``'s output lines in the background; return the growing list."""
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def start_until(
    argv: list[str], text: str = "Serving until interrupted", timeout_s: float = 240, **kwargs: Any
) -> tuple[subprocess.Popen[str], list[str]]:
    """Start ``argv`` (output merged) and wait until a line holds ``text``.

    Raises AssertionError with the output when the process ends or the time runs out first.
    """
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs
    )
    lines = follow(proc)
    deadline = time.monotonic() + timeout_s
    while not any(text in line for line in lines):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{argv[:6]} did not print {text!r}:\n" + "".join(lines))
        time.sleep(0.3)
    return proc, lines


def stop(proc: subprocess.Popen[str], timeout_s: float = 90) -> int | None:
    """SIGINT, as Ctrl+C: wait for a clean stop, kill after ``timeout_s``; the exit status."""
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            return None
    return proc.returncode
