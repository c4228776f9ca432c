"""Monitoring, side by side in one run.

1. Drift check throughput on 1,000,000 rows x 20 features, 10 of them shifted by 0.3
   standard deviations, against a 1,000,000-row reference:
   (a) the framework's detector (scipy KS + PSI, Holm-corrected, against the 20,000-row
       reference sample a registered model carries);
   (b) a plain per-column ``scipy.stats.ks_2samp`` loop over the full reference, at p < 0.05;
   (c) Evidently's default data-drift preset (``DataDriftPreset``), in its own virtual
       environment in a cache folder (Evidently needs pandas < 3).
   Each prints values/s (rows x features / seconds) and the features it flags.
2. Serving: ``python -m framework task=serve`` with ``monitor.enabled=true`` and ``false``,
   driven by wrk (1-row requests, concurrency 1 and 16), on and off alternately for
   ``--rounds`` rounds: req/s and p50 of each, and the mean cost.

    python benchmarks/monitor.py [--rows 1000000] [--duration 8] [--skip-evidently]
                                 [--skip-serving]

The serving part needs wrk (Debian: apt-get install wrk).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serve_http import (
    CACHE,
    MODEL,
    free_port,
    make_bodies,
    serve_command,
    start,
    stop,
    train,
    wait_http,
    wrk,
)

from framework.config.monitor import DriftConfig
from framework.monitoring.drift import DriftDetector

EVIDENTLY_VENV = CACHE / "evidently-venv"
EVIDENTLY_PACKAGES = ["evidently>=0.7,<0.8", "pandas<3"]
FEATURES = 20
SHIFTED = 10
SHIFT = 0.3

EVIDENTLY_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np, pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset
    ref = np.load(sys.argv[1]); cur = np.load(sys.argv[2])
    names = [f"f{j}" for j in range(ref.shape[1])]
    reference = pd.DataFrame(ref, columns=names); current = pd.DataFrame(cur, columns=names)
    started = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    result = snapshot.dict()
    seconds = time.perf_counter() - started
    flagged = []
    for metric in result["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift") and metric["value"] >= config["threshold"]:
            flagged.append(config["column"])
    print(json.dumps({"seconds": seconds, "flagged": flagged,
                      "method": result["metrics"][1]["metric_name"]}))
    """
)


def evidently_python() -> Path:
    python = EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        print(f"  making {EVIDENTLY_VENV} (Evidently needs pandas < 3) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *EVIDENTLY_PACKAGES], check=True)
    return python


def data(rows: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(rows, FEATURES))
    current = rng.normal(size=(rows, FEATURES))
    current[:, :SHIFTED] += SHIFT
    return reference, current


def drift_part(rows: int, skip_evidently: bool) -> dict[str, dict[str, object]]:
    reference, current = data(rows)
    names = [f"f{j}" for j in range(FEATURES)]
    values = rows * FEATURES
    out: dict[str, dict[str, object]] = {}

    config = DriftConfig()
    rng = np.random.default_rng(1)
    sample = reference[rng.choice(rows, size=min(rows, config.reference_rows), replace=False)]
    started = time.perf_counter()
    detector = DriftDetector({n: sample[:, j] for j, n in enumerate(names)}, None, config)
    built = time.perf_counter() - started
    columns = {n: np.ascontiguousarray(current[:, j]) for j, n in enumerate(names)}
    started = time.perf_counter()
    report = detector.check(columns)
    seconds = time.perf_counter() - started
    out["(a) framework"] = {"seconds": seconds, "flagged": report.drifted, "setup_s": built}

    from scipy import stats

    started = time.perf_counter()
    flagged = [
        n
        for j, n in enumerate(names)
        if stats.ks_2samp(reference[:, j], current[:, j]).pvalue < 0.05
    ]
    out["(b) scipy ks_2samp loop, p<0.05"] = {
        "seconds": time.perf_counter() - started,
        "flagged": flagged,
    }

    if not skip_evidently:
        python = evidently_python()
        with tempfile.TemporaryDirectory() as folder:
            ref_path, cur_path = Path(folder) / "ref.npy", Path(folder) / "cur.npy"
            np.save(ref_path, reference)
            np.save(cur_path, current)
            script = Path(folder) / "run.py"
            script.write_text(EVIDENTLY_SCRIPT)
            run = subprocess.run(
                [str(python), str(script), str(ref_path), str(cur_path)],
                capture_output=True,
                text=True,
                timeout=3600,
            )
        if run.returncode != 0:
            raise RuntimeError(run.stderr[-3000:])
        result = json.loads(run.stdout.strip().splitlines()[-1])
        out["(c) Evidently DataDriftPreset"] = result

    shifted = [f"f{j}" for j in range(SHIFTED)]
    print(
        f"\nDrift check: {rows:,} rows x {FEATURES} features ({values:,} values), "
        f"{SHIFTED} shifted by {SHIFT} std"
    )
    for name, result in out.items():
        rate = values / float(result["seconds"])  # type: ignore[arg-type]
        result["values_s"] = rate
        flagged = list(result["flagged"])  # type: ignore[call-overload]
        exact = "yes" if sorted(flagged) == shifted else "NO"
        print(
            f"  {name:<34} {float(result['seconds']):7.2f} s {rate / 1e6:8.2f} M values/s  "  # type: ignore[arg-type]
            f"flags {len(flagged):2d} features, exactly the shifted: {exact}"
        )
        if exact == "NO":
            print(f"      flagged: {', '.join(flagged)}")
    a = out["(a) framework"]
    print(f"  (a) builds its detector from the stored sample in {float(a['setup_s']):.2f} s")  # type: ignore[arg-type]
    for other in list(out)[1:]:
        ratio = float(a["values_s"]) / float(out[other]["values_s"])  # type: ignore[arg-type]
        print(f"  a / {other.split(')')[0][1:]}: {ratio:.1f}x values/s")
    return out


def false_alarms(windows: int = 100, rows: int = 2_000) -> None:
    """How often each rule flags at least one feature when nothing moved (family-wise)."""
    from scipy import stats

    rng = np.random.default_rng(7)
    reference = rng.normal(size=(20_000, FEATURES))
    names = [f"f{j}" for j in range(FEATURES)]
    detector = DriftDetector({n: reference[:, j] for j, n in enumerate(names)}, None, DriftConfig())
    framework = plain = 0
    for _ in range(windows):
        current = rng.normal(size=(rows, FEATURES))
        framework += bool(detector.check({n: current[:, j] for j, n in enumerate(names)}).drifted)
        plain += any(
            stats.ks_2samp(reference[:, j], current[:, j]).pvalue < 0.05 for j in range(FEATURES)
        )
    print(
        f"  windows with a false alarm ({windows} windows of {rows:,} unshifted rows x "
        f"{FEATURES} features): (a) {framework}, (b) plain KS at p<0.05 {plain}"
    )


def serving_part(duration: int, rounds: int) -> None:
    if shutil.which("wrk") is None:
        print("serving part skipped: wrk is needed (apt-get install wrk)")
        return
    work = Path(tempfile.mkdtemp(prefix="monitor-bench-"))
    print(f"\nServing with monitoring on vs off (work folder {work}) ...", flush=True)
    version_dir, key = train(work)
    bodies = make_bodies(version_dir)
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for round_ in range(rounds):  # on, off, on, off, ...: drift of the machine hits both
        for monitoring in ("true", "false"):
            port = free_port()
            proc = start(
                serve_command(
                    port,
                    "serve.num_replicas=1",
                    f"monitor.enabled={monitoring}",
                ),
                work,
            )
            try:
                wait_http(f"http://127.0.0.1:{port}/readyz", 240, proc)
                url = f"http://127.0.0.1:{port}/v1/models/{MODEL}/predict"
                wrk(url, bodies[("v1", 1)], 1, 16, 2, key)  # warm-up
                for connections in (1, 16):
                    cell = wrk(url, bodies[("v1", 1)], 1, connections, duration, key)
                    results.setdefault((monitoring, connections), []).append(
                        (cell.requests_s, cell.p50_ms)
                    )
                    state = "on " if monitoring == "true" else "off"
                    print(
                        f"  round {round_ + 1} monitoring {state} c={connections:<2} "
                        f"{cell.requests_s:8.0f} req/s  p50 {cell.p50_ms:6.2f} ms  "
                        f"errors {cell.errors}",
                        flush=True,
                    )
            finally:
                stop(proc)
    for connections in (1, 16):
        on = np.mean(results[("true", connections)], axis=0)
        off = np.mean(results[("false", connections)], axis=0)
        cost = 1 - on[0] / off[0]
        print(
            f"  c={connections:<2} mean of {rounds}: on {on[0]:.0f} req/s, off {off[0]:.0f} req/s: "
            f"monitoring costs {cost:6.1%} of req/s (target <= 10%); "
            f"p50 {off[1]:.2f} -> {on[1]:.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk cell")
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--skip-serving", action="store_true")
    parser.add_argument("--skip-drift", action="store_true")
    parser.add_argument("--rounds", type=int, default=2, help="on/off server pairs")
    args = parser.parse_args()
    if not args.skip_drift:
        drift_part(args.rows, args.skip_evidently)
        false_alarms()
    if not args.skip_serving:
        serving_part(args.duration, args.rounds)


if __name__ == "__main__":
    main()
