"""Asynchronous inference through the Redis task queue against the synchronous HTTP path.

One run, side by side on one machine: the benchmark model (breast cancer data, logistic
regression) is trained, then served by ``python -m framework task=serve`` with
``serve.async.enabled=true`` on the machine's Redis, once with one queue consumer and once
with two. For each, and for 1-row and 256-row bodies:

- sync: ``POST /v1/models/{name}/predict`` from ``--connections`` keep-alive connections for
  ``--duration`` seconds: rows/s and p50/p99 of the round trip;
- async: ``POST /v1/models/{name}/predict_async`` the same way; rows/s through the queue is
  the accepted rows over the time from the first enqueue to the last stored result, and the
  end-to-end p50/p99 is each task's ``latency_ms`` (from the broker taking the message to
  its result being stored), read from the results in Redis.

Target: 256-row messages at least 0.5x the synchronous path's rows/s.

    python benchmarks/async_queue.py [--duration 8] [--connections 16] [--broker redis://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serve_http import (
    MODEL,
    env,
    free_port,
    make_bodies,
    serve_command,
    stop,
    train,
    wait_http,
)

SIZES = (1, 256)


@dataclass
class Load:
    """What the load generator saw."""

    sent: int
    statuses: dict[int, int]
    latencies_ms: list[float]
    seconds: float
    first: float
    bodies: list[bytes]


async def _worker(
    host: str, port: int, request: bytes, until: float, out: Load, keep_bodies: bool
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length) if length else b""
            out.latencies_ms.append((time.perf_counter() - started) * 1000.0)
            out.statuses[status] = out.statuses.get(status, 0) + 1
            out.sent += 1
            if keep_bodies and status == 202:
                out.bodies.append(body)
    finally:
        writer.close()


def post_load(
    url_path: str, port: int, key: str, body: bytes, connections: int, duration: float, keep: bool
) -> Load:
    """POST ``body`` from ``connections`` keep-alive connections for ``duration`` seconds."""
    request = (
        f"POST {url_path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nx-api-key: {key}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    out = Load(0, {}, [], 0.0, time.time(), [])

    async def run() -> None:
        until = time.perf_counter() + duration
        await asyncio.gather(
            *(_worker("127.0.0.1", port, request, until, out, keep) for _ in range(connections))
        )

    started = time.perf_counter()
    asyncio.run(run())
    out.seconds = time.perf_counter() - started
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def drain(client: Any, stream: str, tasks: list[str], timeout: float) -> list[dict[str, Any]]:
    """Wait until every task has a result; the results."""
    deadline = time.monotonic() + timeout
    keys = [f"{stream}:result:{t}" for t in tasks]
    found: dict[str, bytes] = {}
    while time.monotonic() < deadline:
        missing = [k for k in keys if k not in found]
        for start in range(0, len(missing), 1000):
            part = missing[start : start + 1000]
            for key, value in zip(part, client.mget(part), strict=True):
                if value is not None:
                    found[key] = value
        if len(found) == len(keys):
            break
        time.sleep(0.05)
    return [json.loads(v) for v in found.values()]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of load per cell")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections")
    parser.add_argument(
        "--broker", default="redis://127.0.0.1:6379/0", help="Redis URL of the task queue"
    )
    parser.add_argument(
        "--consumers", default="1,2", help="consumer replica counts to measure (comma-separated)"
    )
    args = parser.parse_args()
    import redis

    client = redis.Redis.from_url(args.broker)
    client.ping()
    work = Path(tempfile.mkdtemp(prefix="fw-async-bench-"))
    print(f"training the benchmark model in {work} ...", flush=True)
    version_dir, key = train(work)  # the model and an API key with the predict role
    bodies = {rows: make_bodies(version_dir)[("v1", rows)] for rows in SIZES}
    results: dict[tuple[str, int, int], dict[str, float]] = {}
    for consumers in [int(c) for c in args.consumers.split(",")]:
        port = free_port()
        stream = f"framework-bench:{int(time.time())}:{consumers}"
        cmd = serve_command(
            port,
            "serve.num_replicas=1",
            "serve.async.enabled=true",
            f"serve.async.broker_url={args.broker}",
            f"serve.async.stream={stream}",
            f"serve.async.num_replicas={consumers}",
        )
        log = open(work / f"serve-{consumers}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(cmd, cwd=work, env=env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", 240, proc)
            time.sleep(3)  # the consumers start beside the model server
            for rows in SIZES:
                body = bodies[rows]
                if consumers == 1 or ("sync", rows, 0) not in results:
                    path = f"/v1/models/{MODEL}/predict"
                    post_load(path, port, key, body, args.connections, 2, False)  # warm
                    sync = post_load(path, port, key, body, args.connections, args.duration, False)
                    ok = sync.statuses.get(200, 0)
                    results[("sync", rows, 0)] = {
                        "rows_s": ok * rows / sync.seconds,
                        "p50": percentile(sync.latencies_ms, 0.5),
                        "p99": percentile(sync.latencies_ms, 0.99),
                        "errors": sync.sent - ok,
                    }
                    _line("sync predict", rows, 0, results[("sync", rows, 0)])
                load = post_load(
                    f"/v1/models/{MODEL}/predict_async",
                    port,
                    key,
                    body,
                    args.connections,
                    args.duration,
                    True,
                )
                tasks = [json.loads(b)["task"] for b in load.bodies]
                done = drain(client, stream, tasks, timeout=300)
                finished = max((d["finished_at"] for d in done), default=load.first)
                accepted = len(tasks)
                span = max(finished - load.first, 1e-9)
                latencies = [d["latency_ms"] for d in done]
                cell = {
                    "rows_s": len(done) * rows / span,
                    "enqueue_rows_s": accepted * rows / load.seconds,
                    "p50": percentile(latencies, 0.5),
                    "p99": percentile(latencies, 0.99),
                    "errors": load.sent - accepted + (accepted - len(done)),
                    "failed": sum(1 for d in done if d["status"] != "done"),
                }
                results[("async", rows, consumers)] = cell
                _line("async via queue", rows, consumers, cell)
        finally:
            stop(proc)
            log.close()
            keys = list(client.scan_iter(f"{stream}*", count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])
    print()
    print("rows/s through the queue against the synchronous path (same run, same machine):")
    for rows in SIZES:
        sync_rate = results[("sync", rows, 0)]["rows_s"]
        for (kind, r, consumers), cell in sorted(results.items()):
            if kind == "async" and r == rows:
                ratio = cell["rows_s"] / sync_rate
                target = "  (target >= 0.5x)" if rows == 256 else ""
                print(
                    f"  {rows:>3}-row messages, {consumers} consumer(s): {ratio:.2f}x "
                    f"({cell['rows_s']:,.0f} vs {sync_rate:,.0f} rows/s){target}"
                )


def _line(label: str, rows: int, consumers: int, cell: dict[str, float]) -> None:
    who = f" consumers={consumers}" if consumers else ""
    extra = f"  (enqueued {cell['enqueue_rows_s']:,.0f} rows/s)" if "enqueue_rows_s" in cell else ""
    p = "end-to-end" if consumers else "round trip"
    print(
        f"  {label:<16} rows={rows:<3}{who:<12} {cell['rows_s']:>10,.0f} rows/s  {p} p50 "
        f"{cell['p50']:8.1f} ms  p99 {cell['p99']:8.1f} ms  errors {int(cell['errors'])}{extra}",
        flush=True,
    )


if __name__ == "__main__":
    urllib.request.getproxies = dict  # type: ignore[assignment]  # localhost only
    main()
