"""Adversarial requests against a running ``task=serve``: counts by status, hangs, violations.

A structural fuzzer built on hypothesis strategies: bodies (ragged and nested arrays, wrong
and mixed types, huge/NaN/Infinity literals, float32 overflow, unicode and invalid UTF-8,
duplicate keys, truncated JSON, oversized bodies), headers (keys, content types, request ids,
binary-extension lengths) and paths (odd characters in the model and version segments, wrong
methods), aimed at every route. Targets: 0 responses 5xx, 0 hangs over 5 s, and every 4xx a
JSON body with an ``error`` (and, for 422, each problem's ``loc``).

    python benchmarks/fuzz.py                      # trains, serves, fuzzes 10,000 cases
    python benchmarks/fuzz.py --url http://127.0.0.1:8000 --key fwk_... --model NAME

The tests run the same strategies with a smaller budget.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

HANG_S = 5.0
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "HEAD"]
ODD_SEGMENTS = [
    "%C2%B2",
    "\u00b2",
    "..",
    "%2e%2e",
    "%00",
    "-1",
    "0",
    "99999999999",
    "1e3",
    "v1",
    "%FF",
    "\u202e",
    "a" * 300,
    "",
    "%20",
    "\U0001f600",
]


@dataclass
class Case:
    method: str
    path: str
    headers: dict[str, bytes]
    body: bytes
    oversize: int = 0  # send a body of this many bytes instead (made when sent, not kept)

    def payload(self) -> bytes:
        if self.oversize:
            return b"[" + b'{"a": 1},' * (self.oversize // 9) + b"{}]"
        return self.body


@dataclass
class Outcome:
    statuses: Counter[int] = field(default_factory=Counter)
    hangs: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)
    bad_refusals: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    def ok(self) -> bool:
        return not (self.hangs or self.server_errors or self.bad_refusals)


# -- strategies ----------------------------------------------------------------------------
def scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([1e39, -1e39, 1e308, 3.4e38, 3.5e38, -0.0, 1980.0, 0, 1, 120, 121]),
        st.text(max_size=12),
        st.sampled_from(["basic", "pro", "monthly", "yearly", "benign", "malignant", "", "NaN"]),
    )


def values() -> st.SearchStrategy[Any]:
    return st.one_of(
        scalars(),
        st.lists(scalars(), max_size=3),
        st.lists(st.lists(scalars(), max_size=2), max_size=2),
        st.dictionaries(st.text(max_size=5), scalars(), max_size=2),
    )


def rows(columns: list[str]) -> st.SearchStrategy[Any]:
    keys = st.sampled_from([*columns, "extra", "", "\u00e9"]) if columns else st.text(max_size=6)
    row = st.dictionaries(keys, values(), max_size=len(columns) + 2)
    return st.one_of(row, st.lists(row, min_size=0, max_size=9), values())


def tensors(columns: list[str]) -> st.SearchStrategy[Any]:
    name = st.sampled_from(["numeric", "categorical", *columns, "bogus"])
    datatype = st.sampled_from(["FP32", "FP64", "INT64", "INT8", "BOOL", "BYTES", "fp32", ""])
    shape = st.one_of(
        st.lists(st.integers(min_value=-2, max_value=6), max_size=3),
        st.just([2, len(columns) or 1]),
        values(),
    )
    data = st.one_of(
        st.lists(values(), max_size=12),
        st.lists(st.lists(scalars(), max_size=4), max_size=3),
        values(),
    )
    tensor = st.fixed_dictionaries(
        {"name": name, "datatype": datatype, "shape": shape},
        optional={
            "data": data,
            "parameters": st.dictionaries(
                st.sampled_from(["binary_data_size", "x"]), values(), max_size=1
            ),
        },
    )
    output = st.one_of(
        st.fixed_dictionaries(
            {"name": st.one_of(st.sampled_from(["label", "probabilities", "x"]), values())},
            optional={"parameters": values()},
        ),
        values(),
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "inputs": st.one_of(st.lists(tensor, max_size=3), values()),
            "outputs": st.one_of(st.lists(output, max_size=2), values()),
            "id": values(),
            "parameters": st.one_of(st.just({"binary_data_output": True}), values()),
            "unknown": values(),
        },
    )


def labels() -> st.SearchStrategy[Any]:
    item = st.fixed_dictionaries({}, optional={"id": values(), "label": values(), "x": values()})
    return st.one_of(
        st.fixed_dictionaries({"labels": st.one_of(st.lists(item, max_size=5), values())}),
        item,
        values(),
    )


def moves() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.fixed_dictionaries(
            {}, optional={"version": values(), "reason": values(), "x": values()}
        ),
        values(),
    )


def encode(draw: Any, document: Any) -> bytes:
    """JSON text of ``document``, sometimes broken on purpose."""
    text = json.dumps(
        document, allow_nan=True, ensure_ascii=draw(st.booleans()), default=str
    ).encode("utf-8", "surrogatepass")
    how = draw(
        st.sampled_from(
            ["plain"] * 6
            + ["truncate", "invalid-utf8", "duplicate-keys", "garbage", "empty", "huge-literal"]
        )
    )
    if how == "truncate" and text:
        return text[: draw(st.integers(min_value=0, max_value=len(text) - 1))]
    if how == "invalid-utf8":
        at = draw(st.integers(min_value=0, max_value=len(text)))
        return text[:at] + b"\xff\xfe\xc3" + text[at:]
    if how == "duplicate-keys" and text.startswith(b"{") and len(text) > 2:
        return b'{"a": 1, "a": [2], ' + text[1:]
    if how == "garbage":
        return draw(st.binary(max_size=64))
    if how == "empty":
        return b""
    if how == "huge-literal":
        return text.replace(b"0", b"1e999", 1).replace(b"1", b"NaN", 1)
    return text


@st.composite
def cases(draw: Any, model: str, key: str, columns: list[str], max_body: int) -> Case:
    """One adversarial request aimed at a route of the serving application."""
    target = draw(
        st.sampled_from(
            [
                "predict",
                "predict_async",
                "explain",
                "infer",
                "infer_version",
                "feedback",
                "promote",
                "rollback",
                "get",
                "get",
                "odd",
            ]
        )
    )
    name = draw(st.one_of(st.just(model), st.sampled_from(ODD_SEGMENTS)))
    version = draw(st.one_of(st.just("1"), st.sampled_from(ODD_SEGMENTS)))
    paths = {
        "predict": (f"/v1/models/{name}/predict", rows(columns)),
        "predict_async": (f"/v1/models/{name}/predict_async", rows(columns)),
        "explain": (f"/v1/models/{name}/explain", rows(columns)),
        "infer": (f"/v2/models/{name}/infer", tensors(columns)),
        "infer_version": (f"/v2/models/{name}/versions/{version}/infer", tensors(columns)),
        "feedback": ("/v1/feedback", labels()),
        "promote": ("/v1/admin/promote", moves()),
        "rollback": ("/v1/admin/rollback", moves()),
    }
    oversize = 0
    if target in paths:
        path, strategy = paths[target]
        method = draw(st.sampled_from(["POST"] * 8 + METHODS))
        body = encode(draw, draw(strategy))
        oversize = max_body + 100 if draw(st.integers(min_value=0, max_value=40)) == 0 else 0
    else:
        path = draw(
            st.sampled_from(
                [
                    "/healthz",
                    "/readyz",
                    "/v2",
                    "/v2/health/live",
                    "/v2/health/ready",
                    "/v1/models",
                    f"/v2/models/{name}",
                    f"/v2/models/{name}/ready",
                    f"/v2/models/{name}/versions/{version}",
                    f"/v2/models/{name}/versions/{version}/ready",
                    "/openapi.json",
                    "/docs",
                    "/v1/admin/config",
                    "/v1/admin/monitor",
                    "/nowhere",
                    f"/v1/models/{name}",
                    f"/v1/tasks/{name}",
                    f"/v1/tasks/{version}",
                    "/v1/tasks/0123456789abcdef0123456789abcdef",
                    "/v1/tasks/1-0",
                ]
            )
        )
        method = draw(st.sampled_from(["GET"] * 8 + METHODS))
        body = b"" if draw(st.booleans()) else encode(draw, draw(values()))
    headers: dict[str, bytes] = {}
    auth = draw(st.sampled_from(["key"] * 6 + ["bearer", "none", "wrong", "empty"]))
    if auth == "key":
        headers["x-api-key"] = key.encode()
    elif auth == "bearer":
        headers["authorization"] = b"Bearer " + key.encode()
    elif auth == "wrong":
        headers["x-api-key"] = (
            draw(st.binary(min_size=1, max_size=40)).replace(b"\r", b"").replace(b"\n", b"") or b"x"
        )
    elif auth == "empty":
        headers["x-api-key"] = b""
    headers["content-type"] = draw(
        st.sampled_from(
            [b"application/json"] * 4
            + [
                b"text/plain",
                b"application/octet-stream",
                b"multipart/form-data; boundary=x",
                b"\xff",
            ]
        )
    )
    if draw(st.booleans()):
        headers["x-request-id"] = draw(
            st.sampled_from([b"abc-123", b"\xff\xfe", b"a" * 300, b"id with space", b"\xc3\xa9"])
        )
    if target.startswith("infer") and draw(st.booleans()):
        headers["inference-header-content-length"] = draw(
            st.sampled_from(
                [
                    b"0",
                    b"1",
                    b"-5",
                    b"abc",
                    str(len(body)).encode(),
                    str(len(body) + 10).encode(),
                    b"99999999999999999999",
                ]
            )
        )
    if draw(st.booleans()):
        headers["x-customer-id"] = (
            draw(st.binary(max_size=12)).replace(b"\r", b"").replace(b"\n", b"")
        )
    quoted = urllib.parse.quote(path, safe="/%")
    # A NUL byte in a header is an HTTP protocol violation HAProxy refuses with its own page.
    clean = {k: v.replace(b"\x00", b"") for k, v in headers.items()}
    return Case(method, quoted, clean, body, oversize)


# -- sending ---------------------------------------------------------------------------------
def judge(case: Case, status: int, body: bytes, outcome: Outcome) -> None:
    """Count one answer; note a 5xx, or a 4xx that is not a JSON error naming the field."""
    what = f"{case.method} {case.path[:120]} -> {status} {body[:200]!r} (sent {case.body[:120]!r})"
    with outcome.lock:
        outcome.statuses[status] += 1
        if status >= 500:
            outcome.server_errors.append(what)
            return
        if 400 <= status < 500 and case.method != "HEAD":
            try:
                error = json.loads(body)
            except ValueError:
                outcome.bad_refusals.append("not JSON: " + what)
                return
            if not isinstance(error, dict) or not isinstance(error.get("error"), str):
                outcome.bad_refusals.append("no error text: " + what)
            elif status == 422 and not all(p.get("loc") for p in error.get("detail", [{}])):
                outcome.bad_refusals.append("no field: " + what)


def send(connection: http.client.HTTPConnection, case: Case) -> tuple[int, bytes]:
    connection.putrequest(case.method, case.path, skip_accept_encoding=True)
    for name, value in case.headers.items():
        connection.putheader(name, value)
    body = case.payload()
    connection.putheader("content-length", str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    return response.status, response.read()


class Sender:
    """One keep-alive connection per thread; reconnects after the server closes one."""

    def __init__(self, url: str):
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.local = threading.local()

    def __call__(self, case: Case, outcome: Outcome) -> None:
        for attempt in range(2):
            connection = getattr(self.local, "connection", None)
            if connection is None:
                connection = self.local.connection = http.client.HTTPConnection(
                    self.host, self.port, timeout=HANG_S + 25
                )
            started = time.monotonic()
            try:
                status, body = send(connection, case)
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                connection.close()
                self.local.connection = None
                if time.monotonic() - started > HANG_S:
                    outcome.hangs.append(f"{case.method} {case.path[:80]}: {exc}")
                    return
                if attempt == 1:
                    with outcome.lock:
                        outcome.statuses[0] += 1  # the connection was closed on us
                continue
            if time.monotonic() - started > HANG_S:
                outcome.hangs.append(
                    f"{case.method} {case.path[:80]} took {time.monotonic() - started:.1f} s"
                )
            judge(case, status, body, outcome)
            return


def generate(
    model: str, key: str, columns: list[str], budget: int, max_body: int, seed: int | None = None
) -> list[Case]:
    """``budget`` cases drawn by hypothesis (generation only: nothing is shrunk or replayed)."""
    drawn: list[Case] = []

    @settings(
        max_examples=budget,
        database=None,
        deadline=None,
        derandomize=seed is not None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],
    )
    @given(cases(model, key, columns, max_body))
    def collect(case: Case) -> None:
        drawn.append(case)

    collect()
    return drawn


def fuzz(
    url: str,
    model: str,
    key: str,
    columns: list[str],
    budget: int,
    threads: int = 4,
    max_body: int = 4 * 1024 * 1024,
    seed: int | None = None,
) -> Outcome:
    """Send ``budget`` generated cases over ``threads`` connections; never raises."""
    outcome = Outcome()
    sender = Sender(url)
    drawn = generate(model, key, columns, budget, max_body, seed)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda case: sender(case, outcome), drawn))
    return outcome


def report(outcome: Outcome) -> None:
    print(f"{outcome.total} cases; responses by status:")
    for status, n in sorted(outcome.statuses.items()):
        print(f"  {status if status else 'closed'}: {n}")
    print(
        f"5xx: {len(outcome.server_errors)}   hangs over {HANG_S:g} s: {len(outcome.hangs)}   "
        f"4xx without a JSON error naming the field: {len(outcome.bad_refusals)}"
    )
    for title, items in (
        ("5xx", outcome.server_errors),
        ("hangs", outcome.hangs),
        ("bad 4xx", outcome.bad_refusals),
    ):
        for item in items[:10]:
            print(f"  {title}: {item}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000, help="requests to send")
    parser.add_argument("--threads", type=int, default=4, help="concurrent connections")
    parser.add_argument("--url", help="a running task=serve (default: train and serve one here)")
    parser.add_argument("--key", help="an API key with the admin role (with --url)")
    parser.add_argument(
        "--model", default="breast_cancer", help="the served model's name (with --url)"
    )
    args = parser.parse_args()
    root = Path(__file__).resolve().parent
    sys.path.insert(0, str(root))
    if args.url:
        columns = _columns(args.url, args.model, args.key or "")
        outcome = fuzz(args.url, args.model, args.key or "", columns, args.cases, args.threads)
        report(outcome)
        sys.exit(0 if outcome.ok() else 1)
    import tempfile

    from serve_http import free_port, serve_command, start, stop, train, wait_http

    work = Path(tempfile.mkdtemp(prefix="fuzz-"))
    print(f"work folder {work}; training the model ...", flush=True)
    _, _ = train(work)
    from framework.security.keys import add_key

    key, _ = add_key(work / "api_keys.json", "fuzz-admin", ["admin"])
    port = free_port()
    proc = start(
        serve_command(port),
        work,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/readyz", 240, proc)
        columns = _columns(url, "breast_cancer", key)
        started = time.monotonic()
        outcome = fuzz(url, "breast_cancer", key, columns, args.cases, args.threads)
        print(f"sent in {time.monotonic() - started:.0f} s")
        report(outcome)
    finally:
        stop(proc)
    sys.exit(0 if outcome.ok() else 1)


def _columns(url: str, model: str, key: str) -> list[str]:
    import urllib.request

    request = urllib.request.Request(f"{url}/v2/models/{model}", headers={"x-api-key": key})
    with urllib.request.urlopen(request, timeout=30) as answer:
        meta = json.loads(answer.read())
    features = meta["parameters"]["feature_columns"]
    return list(features["numeric"]) + list(features["categorical"])


if __name__ == "__main__":
    main()
