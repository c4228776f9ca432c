"""Steady client load with retries, for fault figures (a killed replica, a lost node).

``RetryingLoad`` runs client threads that each send one request after another; a request
that fails (connection error, timeout or a 5xx) is retried at most ``retries`` times with a
short backoff. It counts what clients saw: answered at once, answered after retries, failed
after all retries, and the longest a client waited for one answer.

Usage: imported by benchmarks/cluster.py and the multi-node tests (python benchmarks/faults.py
--help says so).
"""

from __future__ import annotations

import argparse
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import requests


class RetryingLoad:
    """``clients`` threads posting ``body`` to ``url`` until ``stop``."""

    def __init__(
        self,
        url: str,
        body: Any,
        headers: dict[str, str],
        clients: int = 4,
        retries: int = 3,
        timeout_s: float = 10.0,
    ):
        self.url, self.body, self.headers = url, body, headers
        self.clients, self.retries, self.timeout_s = clients, retries, timeout_s
        self.counts: Counter[str] = Counter()
        self.longest_s = 0.0
        self.errors: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._futures: list[Future[None]] = []

    def _client(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            started = time.monotonic()
            outcome = "failed"
            for attempt in range(self.retries + 1):
                try:
                    answer = session.post(
                        self.url, json=self.body, headers=self.headers, timeout=self.timeout_s
                    )
                    if answer.status_code < 500:
                        outcome = "ok" if attempt == 0 else "retried"
                        if answer.status_code != 200:
                            outcome = f"status_{answer.status_code}"
                        break
                    self._note(f"{answer.status_code}")
                except requests.RequestException as exc:
                    self._note(type(exc).__name__)
                time.sleep(0.25 * (attempt + 1))
            waited = time.monotonic() - started
            with self._lock:
                self.counts[outcome] += 1
                self.longest_s = max(self.longest_s, waited)

    def _note(self, error: str) -> None:
        with self._lock:
            self.errors[error] += 1

    def start(self) -> RetryingLoad:
        self._pool = ThreadPoolExecutor(self.clients)
        self._futures = [self._pool.submit(self._client) for _ in range(self.clients)]
        return self

    def stop(self) -> None:
        self._stop.set()
        for future in self._futures:
            future.result()
        if self._pool is not None:
            self._pool.shutdown()

    @property
    def answered(self) -> int:
        return self.counts["ok"] + self.counts["retried"]

    def summary(self) -> str:
        return (
            f"{self.answered} answered ({self.counts['retried']} after a retry), "
            f"{self.counts['failed']} failed after {self.retries} retries, "
            f"{sum(v for k, v in self.counts.items() if k.startswith('status_'))} refused; "
            f"longest wait for an answer {self.longest_s:.1f} s; errors seen: "
            f"{dict(self.errors) or 'none'}"
        )


def wait_until(check: Callable[[], bool], timeout_s: float, every_s: float = 0.5) -> float | None:
    """Seconds until ``check()`` held, or None when it did not within ``timeout_s``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if check():
            return time.monotonic() - started
        time.sleep(every_s)
    return None


if __name__ == "__main__":
    argparse.ArgumentParser(
        description="Client load with retries; used by benchmarks/cluster.py and the tests."
    ).parse_args()
