"""Serving over HTTP, side by side in one run, one server at a time, driven by wrk.

(a) the framework: ``python -m framework task=serve`` (Ray Serve, throughput-optimized mode
    with HAProxy ingress, API key check, schema validation, batching, ONNX Runtime);
(b) a bare Ray Serve deployment that returns a constant, with the same Ray settings as (a);
(c) a plain FastAPI/uvicorn app running the same ONNX model in-process (no validation);
(d) MLServer serving the same ONNX model through its V2 endpoint, from its own virtual
    environment (made here in a cache folder) with a small custom ONNX Runtime runtime.

Each is driven with wrk at concurrency 1 and 16, with 1-row and 256-row requests. (a) and (c)
answer both the JSON-records route (/v1/.../predict) and the Open Inference Protocol
(/v2/.../infer); (d) answers the latter only. The model is the default breast cancer data
with a logistic regression (scaler + model, 30 float features), ONNX Runtime on 1 thread.

    python benchmarks/serve_http.py [--duration 8] [--replicas 1] [--skip-mlserver]

Needs wrk (Debian: apt-get install wrk).
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "framework-bench"
MLSERVER_VENV = CACHE / "mlserver-venv"
MLSERVER_PACKAGES = ["mlserver==1.7.*", "onnxruntime", "numpy"]
MODEL = "breast_cancer"
CONCURRENCY = (1, 16)
SIZES = (1, 256)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env() -> dict[str, str]:
    out = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "COLUMNS": "200"}
    out.pop("RAY_ADDRESS", None)
    return out


# -- request bodies ----------------------------------------------------------------------
def make_bodies(version_dir: Path) -> dict[tuple[str, int], bytes]:
    """Request bodies per (protocol, rows), from the breast cancer data set."""
    from sklearn.datasets import load_breast_cancer

    manifest = json.loads((version_dir / "manifest.json").read_text())
    columns = manifest["signature"]["numeric"]
    data = load_breast_cancer().data
    bodies = {}
    for rows in SIZES:
        values = data[:rows].round(4)
        records = [dict(zip(columns, map(float, row), strict=True)) for row in values]
        bodies[("v1", rows)] = json.dumps(records).encode()
        v2 = {
            "inputs": [
                {
                    "name": "numeric",
                    "datatype": "FP32",
                    "shape": [rows, len(columns)],
                    "data": [float(v) for v in values.reshape(-1)],
                }
            ]
        }
        bodies[("v2", rows)] = json.dumps(v2).encode()
    return bodies


# -- wrk ---------------------------------------------------------------------------------
@dataclass
class Cell:
    requests_s: float
    rows_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def _ms(text: str) -> float:
    value = float(re.match(r"[\d.]+", text).group())  # type: ignore[union-attr]
    if text.endswith("us"):
        return value / 1000
    if text.endswith("ms"):
        return value
    if text.endswith("s"):
        return value * 1000
    return value


def wrk(url: str, body: bytes, rows: int, connections: int, duration: int, key: str | None) -> Cell:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write('wrk.method = "POST"\n')
        script.write('wrk.headers["Content-Type"] = "application/json"\n')
        if key:
            script.write(f'wrk.headers["x-api-key"] = "{key}"\n')
        script.write(f"wrk.body = [==[{body.decode()}]==]\n")
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{duration}s",
                "--latency",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=duration + 60,
        ).stdout
    finally:
        os.unlink(script.name)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return Cell(rate, rate * rows, p50, p99, int(errors.group(1)) if errors else 0)


def check(url: str, body: bytes, key: str | None) -> None:
    headers = {"content-type": "application/json", **({"x-api-key": key} if key else {})}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200, answer.status


def wait_http(url: str, timeout: float, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except Exception:
            time.sleep(0.5)
    raise RuntimeError(f"{url} not ready within {timeout} s")


def stop(proc: subprocess.Popen[Any], timeout: float = 90) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_command(port: int, *overrides: str) -> list[str]:
    """``python -m framework task=serve`` of the benchmark model on ``port``."""
    return [
        sys.executable,
        "-m",
        "framework",
        "task=serve",
        "model=logistic_regression",
        f"serve.port={port}",
        *overrides,
    ]


def start(cmd: list[str], cwd: Path, extra_env: dict[str, str] | None = None) -> Any:
    log = open(cwd / f"server-{int(time.time() * 1000)}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        cmd, cwd=cwd, env={**env(), **(extra_env or {})}, stdout=log, stderr=subprocess.STDOUT
    )
    return proc


# -- (b) bare Ray Serve, (c) FastAPI: run as subprocesses of this file ------------------------
def bare_ray_server(port: int, replicas: int) -> None:
    from framework.config.serve import ServeConfig
    from framework.serving.deploy import serve_env

    haproxy_dir = Path(tempfile.mkdtemp(prefix="fw-bare-"))
    os.environ.update(serve_env(ServeConfig(), haproxy_dir))
    import ray
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import Response

    config = ServeConfig()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})

    @serve.deployment(
        num_replicas=replicas,
        max_ongoing_requests=config.max_ongoing_requests,
        max_queued_requests=config.max_queued_requests,
        ray_actor_options={"num_cpus": config.num_cpus},
    )
    class Constant:
        async def __call__(self, request: Request) -> Response:
            await request.body()
            return Response(b'{"ok":true}', media_type="application/json")

    serve.run(Constant.bind(), name="bare", route_prefix="/")
    print("READY", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    stopped.wait()
    serve.shutdown()
    ray.shutdown()
    shutil.rmtree(haproxy_dir, ignore_errors=True)


def fastapi_server(port: int, model_path: str) -> None:
    import numpy as np
    import onnxruntime as ort
    import orjson
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import Response

    manifest = json.loads((Path(model_path).parent / "manifest.json").read_text())
    columns = manifest["signature"]["numeric"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    outputs = manifest["signature"]["outputs"]
    app = FastAPI()

    @app.get("/health")
    async def health() -> Response:
        return Response(b"{}", media_type="application/json")

    @app.post("/v1/models/{name}/predict")
    async def predict(request: Request, name: str) -> Response:
        records = orjson.loads(await request.body())
        x = np.array([[r.get(c) for c in columns] for r in records], dtype=np.float32)
        labels, scores = session.run(outputs, {"numeric": x})
        return Response(
            orjson.dumps(
                {
                    "predictions": [
                        {"label": label, "probabilities": p}
                        for label, p in zip(labels.tolist(), scores.tolist(), strict=True)
                    ]
                }
            ),
            media_type="application/json",
        )

    @app.post("/v2/models/{name}/infer")
    async def infer(request: Request, name: str) -> Response:
        body = orjson.loads(await request.body())
        tensor = body["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        labels, scores = session.run(outputs, {"numeric": x})
        return Response(
            orjson.dumps(
                {
                    "model_name": name,
                    "outputs": [
                        {
                            "name": "label",
                            "datatype": "BYTES",
                            "shape": [len(x)],
                            "data": labels.tolist(),
                        },
                        {
                            "name": "probabilities",
                            "datatype": "FP32",
                            "shape": list(scores.shape),
                            "data": scores.reshape(-1),
                        },
                    ],
                },
                option=orjson.OPT_SERIALIZE_NUMPY,
            ),
            media_type="application/json",
        )

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- (d) MLServer ------------------------------------------------------------------------
MLSERVER_RUNTIME = """
import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxRuntime(MLModel):
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            self.settings.parameters.uri, options, providers=["CPUExecutionProvider"]
        )
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32)
        labels, scores = self.session.run(None, {"numeric": x})
        return InferenceResponse(
            model_name=self.name,
            outputs=[
                StringCodec.encode_output("label", [str(v) for v in labels]),
                NumpyCodec.encode_output("probabilities", scores),
            ],
        )
"""


def mlserver_python() -> Path:
    """MLServer's own virtual environment (it pins an older FastAPI), made once."""
    python = MLSERVER_VENV / "bin" / "python"
    marker = MLSERVER_VENV / ".installed"
    if not marker.is_file():
        print(f"creating MLServer's virtual environment in {MLSERVER_VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *MLSERVER_PACKAGES], check=True)
        marker.write_text("ok")
    return python


def start_mlserver(work: Path, model_path: Path, port: int) -> Any:
    folder = work / "mlserver"
    (folder / "model").mkdir(parents=True, exist_ok=True)
    (folder / "runtime.py").write_text(textwrap.dedent(MLSERVER_RUNTIME))
    (folder / "settings.json").write_text(
        json.dumps(
            {
                "http_port": port,
                "grpc_port": free_port(),
                "host": "127.0.0.1",
                "metrics_endpoint": None,
                "parallel_workers": 0,
                "debug": False,
                "gzip_enabled": False,
            }
        )
    )
    (folder / "model" / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "m",
                "implementation": "runtime.OnnxRuntime",
                "parameters": {"uri": str(model_path)},
            }
        )
    )
    python = mlserver_python()
    mlserver = python.with_name("mlserver")
    return start([str(mlserver), "start", str(folder)], folder, {"PYTHONPATH": str(folder)})


# -- the run -----------------------------------------------------------------------------
def train(work: Path) -> tuple[Path, str]:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "framework",
            "model=logistic_regression",
            "train.latency_runs=20",
        ],
        cwd=work,
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if run.returncode != 0:
        raise RuntimeError(run.stdout + run.stderr)
    made = subprocess.run(
        [sys.executable, "-m", "framework", "task=api_key", "security.key_name=bench"],
        cwd=work,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    key = made.stdout.strip().splitlines()[-1]
    return work / "model_registry" / MODEL / "versions" / "1", key


Results = dict[tuple[str, int, int], Cell]


def drive(
    name: str,
    urls: dict[str, str],
    bodies: dict[tuple[str, int], bytes],
    key: str | None,
    duration: int,
    results: Results,
    label: str | None = None,
) -> None:
    for protocol, url in urls.items():
        tag = label or f"{name} {protocol}"
        body_protocol = "v1" if protocol == "const" else protocol
        check(url, bodies[(body_protocol, 1)], key)
        for rows in SIZES:
            for connections in CONCURRENCY:
                cell = wrk(url, bodies[(body_protocol, rows)], rows, connections, duration, key)
                results[(tag, rows, connections)] = cell
                print(
                    f"  {tag:<24} rows={rows:<3} c={connections:<2} {cell.requests_s:9.0f} req/s "
                    f"{cell.rows_s:10.0f} rows/s  p50 {cell.p50_ms:7.2f} ms  p99 "
                    f"{cell.p99_ms:7.2f} ms  errors {cell.errors}",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk cell")
    parser.add_argument("--replicas", type=int, default=1, help="replicas of (a) and (b)")
    parser.add_argument("--skip-mlserver", action="store_true")
    parser.add_argument(
        "--bare-server", nargs=2, metavar=("PORT", "REPLICAS"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--fastapi-server", nargs=2, metavar=("PORT", "MODEL"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.bare_server:
        bare_ray_server(int(args.bare_server[0]), int(args.bare_server[1]))
        return
    if args.fastapi_server:
        fastapi_server(int(args.fastapi_server[0]), args.fastapi_server[1])
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")

    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    print(f"work folder {work}; training the model ...", flush=True)
    version_dir, key = train(work)
    model_path = version_dir / "model.onnx"
    bodies = make_bodies(version_dir)
    results: Results = {}
    me = [sys.executable, str(Path(__file__).resolve())]

    print(f"(a) framework task=serve, {args.replicas} replica(s)", flush=True)
    port = free_port()
    proc = start(
        serve_command(port, f"serve.num_replicas={args.replicas}", "ray.include_dashboard=false"),
        work,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", 240, proc)
        base = f"http://127.0.0.1:{port}"
        drive(
            "(a)",
            {"v1": f"{base}/v1/models/{MODEL}/predict", "v2": f"{base}/v2/models/{MODEL}/infer"},
            bodies,
            key,
            args.duration,
            results,
        )
    finally:
        stop(proc)

    print("(b) bare Ray Serve deployment returning a constant, same Ray settings", flush=True)
    port = free_port()
    proc = start([*me, "--bare-server", str(port), str(args.replicas)], work)
    try:
        wait_ok = time.monotonic() + 240
        while time.monotonic() < wait_ok:
            try:
                check(f"http://127.0.0.1:{port}/", b"{}", None)
                break
            except Exception:
                if proc.poll() is not None:
                    raise RuntimeError("bare Ray Serve server exited") from None
                time.sleep(0.5)
        drive(
            "(b)",
            {"const": f"http://127.0.0.1:{port}/"},
            bodies,
            None,
            args.duration,
            results,
            label="(b) constant",
        )
    finally:
        stop(proc)

    print("(c) FastAPI + uvicorn, same ONNX model in-process", flush=True)
    port = free_port()
    proc = start([*me, "--fastapi-server", str(port), str(model_path)], work)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 60, proc)
        base = f"http://127.0.0.1:{port}"
        drive(
            "(c)",
            {"v1": f"{base}/v1/models/{MODEL}/predict", "v2": f"{base}/v2/models/{MODEL}/infer"},
            bodies,
            None,
            args.duration,
            results,
        )
    finally:
        stop(proc, 30)

    if not args.skip_mlserver:
        print("(d) MLServer V2 endpoint, custom ONNX Runtime runtime", flush=True)
        port = free_port()
        proc = start_mlserver(work, model_path, port)
        try:
            wait_http(f"http://127.0.0.1:{port}/v2/models/m/ready", 300, proc)
            drive(
                "(d)",
                {"v2": f"http://127.0.0.1:{port}/v2/models/m/infer"},
                bodies,
                None,
                args.duration,
                results,
            )
        finally:
            stop(proc, 30)

    report(results)
    shutil.rmtree(work, ignore_errors=True)


def report(results: Results) -> None:
    print("\nratios (req/s unless noted):")

    def ratio(a: str, b: str, rows: int, c: int, rows_s: bool = False) -> str:
        if (a, rows, c) not in results or (b, rows, c) not in results:
            return "n/a"
        x, y = results[(a, rows, c)], results[(b, rows, c)]
        num, den = (x.rows_s, y.rows_s) if rows_s else (x.requests_s, y.requests_s)
        return f"{num / den:.2f}"

    for rows in SIZES:
        for c in CONCURRENCY:
            print(
                f"  rows={rows:<3} c={c:<2}  a/b v1 {ratio('(a) v1', '(b) constant', rows, c)}"
                f"  a/b v2 {ratio('(a) v2', '(b) constant', rows, c)}"
                f"  a/c v1 {ratio('(a) v1', '(c) v1', rows, c)}"
                f"  a/c v2 {ratio('(a) v2', '(c) v2', rows, c)}"
                f"  a/d v2 {ratio('(a) v2', '(d) v2', rows, c)}"
                f"  a/d v1 {ratio('(a) v1', '(d) v2', rows, c)}"
            )
    print("\ntargets:")
    print(f"  a/b >= 0.8 req/s (1 row, c=16, v1): {ratio('(a) v1', '(b) constant', 1, 16)}")
    print(
        f"  a/d >= 0.5 req/s (1 row, c=16, v2): {ratio('(a) v2', '(d) v2', 1, 16)}"
        f"  (v1 records: {ratio('(a) v1', '(d) v2', 1, 16)})"
    )
    print(
        f"  a/d >= 1.0 rows/s (256 rows, c=16, v2): "
        f"{ratio('(a) v2', '(d) v2', 256, 16, rows_s=True)}"
    )


if __name__ == "__main__":
    main()
