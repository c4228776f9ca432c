"""Monitoring and safe rollout over real HTTP, as an operator runs them.

One module-wide application: a breast cancer champion trained through the CLI and served by
`task=serve` with the monitor on. Challengers are trained through the CLI while it serves:
a deliberately bad one (shuffled labels) must be rolled back by the policy alone once labels
arrive, a good one ramped up and promoted. Then the Prometheus endpoint, manual
rollback/promote under load, shadow mirroring, and the drift scenario (the noise simulator
shifts two features; the batch job and the live metric flag exactly those).
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from sklearn.datasets import load_breast_cancer

from framework.data.source import snake_case
from framework.security.keys import add_key
from framework.serving.router import bucket
from framework.store.registry import ModelRegistry
from tests.e2e.conftest import ROOT, cli_env, free_port, run_cli, start_serve
from tests.processes import stop
from tests.tools import promtool

pytestmark = pytest.mark.e2e

CLEAN = ["model=logistic_regression", "data.noise.enabled=false"]
#: The noise simulator with only the named corruption turned on.
ONLY = [
    "data.noise.enabled=true",
    "data.noise.missing_rate=0",
    "data.noise.nan_string_rate=0",
    "data.noise.outlier_rate=0",
    "data.noise.label_missing_rate=0",
    "data.noise.imbalance_ratio=null",
]
SHIFT = {"mean_radius": 1.5, "worst_texture": 1.5}
SHIFTED = ["data.noise.shift_columns=[mean_radius,worst_texture]", "data.noise.shift_std=1.5"]
MONITOR = [
    "monitor.rollout.steps=[0.1,0.5,1.0]",
    "monitor.rollout.min_requests_per_step=30",
    "monitor.window.min_labels=20",
    "monitor.window.rows=300",
    "monitor.window.min_rows=100",
    "monitor.window.check_every_s=1",
    "monitor.registry_poll_s=0.5",
    "monitor.verify_every_s=1",
]
NAME = "breast_cancer"


METRICS_ENV = {"RAY_metrics_report_interval_ms": "1000", "COLUMNS": "200"}


def _cli(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(work, *args, env=METRICS_ENV)


def _train(work: Path, *args: str) -> None:
    done = _cli(work, *CLEAN, *args, "train.latency_runs=5")
    assert done.returncode == 0, done.stdout + done.stderr


@dataclass
class App:
    url: str
    metrics_url: str
    key: str
    admin: str
    work: Path
    proc: subprocess.Popen[str]
    rows: list[dict[str, float]]
    truth: list[str]
    lines: list[str] = field(default_factory=list)
    session: requests.Session = field(default_factory=requests.Session)
    sent: int = 0

    @property
    def store(self) -> ModelRegistry:
        return ModelRegistry(self.work / "model_registry")

    def predict(
        self, i: int, data: tuple[list[dict[str, float]], list[str]] | None = None
    ) -> tuple[int, str, str]:
        """Predict row ``i`` for customer ``c<i>``; return (version, prediction id, truth)."""
        rows, truth = data or (self.rows, self.truth)
        row = rows[i % len(rows)]
        response = requests.post(
            f"{self.url}/v1/models/{NAME}/predict",
            json=row,
            headers={"x-api-key": self.key, "x-customer-id": f"customer-{i}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        return body["version"], body["predictions"][0]["id"], truth[i % len(truth)]

    def traffic(
        self, n: int, data: tuple[list[dict[str, float]], list[str]] | None = None
    ) -> list[tuple[int, str, str]]:
        start = self.sent
        self.sent += n
        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(lambda i: self.predict(i, data), range(start, start + n)))

    def feedback(self, answered: list[tuple[int, str, str]]) -> dict[str, Any]:
        labels = [{"id": rid, "label": truth} for _, rid, truth in answered]
        response = self.session.post(
            f"{self.url}/v1/feedback", json={"labels": labels}, headers={"x-api-key": self.key}
        )
        assert response.status_code == 200, response.text
        return response.json()

    def status(self) -> dict[str, Any]:
        response = self.session.get(
            f"{self.url}/v1/admin/monitor", headers={"x-api-key": self.admin}
        )
        assert response.status_code == 200, response.text
        return response.json()

    def admin_post(self, path: str, body: Any = None, key: str | None = None) -> Any:
        return self.session.post(
            self.url + path,
            data=json.dumps(body) if body is not None else b"",
            headers={"x-api-key": key or self.admin},
        )

    def wait(self, check: Any, what: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if check(status):
                return status
            time.sleep(0.5)
        raise AssertionError(f"{what} not reached in {timeout} s: {json.dumps(status)[:3000]}")

    def scrape(self) -> str:
        return requests.get(self.metrics_url, timeout=10).text


def _dataset() -> tuple[list[dict[str, float]], list[str]]:
    data = load_breast_cancer()
    names = [snake_case(n) for n in data.feature_names]
    rows = [dict(zip(names, map(float, x), strict=True)) for x in data.data]
    truth = [str(data.target_names[t]) for t in data.target]
    return rows, truth


def _shifted_by_the_noise_simulator() -> tuple[list[dict[str, float]], list[str]]:
    """The bundled data after the noise simulator moved the two SHIFT columns."""
    from framework import registry
    from framework.config import DataConfig
    from framework.data.noise import inject_noise

    spec = yaml.safe_load((ROOT / "conf" / "data" / "breast_cancer.yaml").read_text())
    spec["noise"] = {"enabled": True, "shift_columns": sorted(SHIFT), "shift_std": 1.5}
    source = registry.sources.get("sklearn_dataset")
    spec["source"] = source.config.model_validate(spec["source"])
    data = DataConfig.model_validate(spec)
    shifted, report = inject_noise(source.impl(data.source).load(), data)
    assert report.injected == {"shifted": 2 * len(shifted)}
    rows = shifted[data.features].astype(float).to_dict("records")
    return rows, shifted[data.target].astype(str).tolist()


ROWS, TRUTH = _dataset()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    work = tmp_path_factory.mktemp("monitoring")
    _train(work)
    key, _ = add_key(work / "api_keys.json", "client", ["predict", "feedback"])
    admin, _ = add_key(work / "api_keys.json", "ops", ["admin"])
    port, metrics_port = free_port(), free_port()
    proc, lines = start_serve(
        work,
        *CLEAN,
        *MONITOR,
        f"serve.port={port}",
        "serve.num_replicas=1",
        f"ray.metrics_export_port={metrics_port}",
        env=cli_env(METRICS_ENV),
    )
    served = App(
        url=f"http://127.0.0.1:{port}",
        metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
        key=key,
        admin=admin,
        work=work,
        proc=proc,
        rows=ROWS,
        truth=TRUTH,
        lines=lines,
    )
    try:
        assert any("metrics:  http" in line for line in served.lines), "".join(served.lines)
        yield served
    finally:
        stop(proc, 60)


def _audit(app: App, action: str) -> list[dict[str, Any]]:
    return [e for e in app.store.audit(NAME) if e["action"] == action]


def test_a_bad_challenger_is_rolled_back_by_the_policy_and_the_split_holds(app: App) -> None:
    # v2, a useless model that the offline champion gate would hold back: let it through, so
    # that the live policy must catch it
    _train(app.work, *ONLY, "data.noise.label_shuffle=true", "gates.champion.enabled=false")
    assert app.store.aliases(NAME) == {"champion": 1, "challenger": 2}
    app.wait(lambda s: s["replica_routing"]["challenger"] == 2, "the replica routing to v2")

    answered = app.traffic(2000)
    share = sum(v == 2 for v, _, _ in answered) / len(answered)
    assert abs(share - 0.10) <= 0.03, f"challenger share {share:.3f} for a declared 0.10"
    again = [app.predict(i)[0] for i in range(50)]  # the same customers see the same version
    assert again == [v for v, _, _ in answered[:50]]
    assert app.status()["aliases"] == {"champion": 1, "challenger": 2}  # no labels: it holds

    result = app.feedback(answered)
    assert result["accepted"] == 2000 and result["matched"] + result["pending"] == 2000
    status = app.wait(lambda s: "challenger" not in s["aliases"], "the automatic rollback")
    assert status["aliases"] == {"champion": 1}
    (rollback,) = _audit(app, "rollback")
    assert rollback["actor"] == "rollout-policy"
    assert rollback["from"] == 2 and rollback["to"] is None
    assert "live accuracy" in rollback["reason"]
    (start,) = _audit(app, "rollout_start")
    assert (start["version"], start["from"], start["to"]) == (2, 0.0, 0.1)
    assert app.store.verify_audit(NAME) == []
    quality = status["quality"]
    assert quality["1"]["status"] == "ok" and quality["1"]["accuracy"] > 0.9
    assert quality["2"]["accuracy"] < quality["1"]["accuracy"] - 0.2
    assert len(quality["1"]["confusion_matrix"]) == 2
    app.wait(lambda s: s["replica_routing"]["challenger"] is None, "traffic back on v1")
    assert {app.predict(i)[0] for i in range(20)} == {1}


def test_a_good_challenger_is_ramped_up_and_promoted(app: App) -> None:
    _train(app.work, "train.seed=7")  # v3, as good as the champion
    app.wait(lambda s: s["replica_routing"]["challenger"] == 3, "the replica routing to v3")
    # A predict-only key aims 100 bad requests at the challenger: client errors never count
    # against a version, so they cannot roll it back.
    weight = app.status()["routing"]["weight"]
    aimed = [f"customer-{i}" for i in range(5000) if bucket(f"customer-{i}") < weight][:100]
    for i, customer in enumerate(aimed):
        bad = [{**app.rows[0], "mean_radius": "x"}] if i % 2 else {"inputs": [{"name": "numeric"}]}
        path = "predict" if i % 2 else "infer"
        prefix = "v1" if i % 2 else "v2"
        response = requests.post(
            f"{app.url}/{prefix}/models/{NAME}/{path}",
            json=bad,
            headers={"x-api-key": app.key, "x-customer-id": customer},
        )
        assert response.status_code == 422, response.text
    status = app.status()
    assert "challenger" in status["aliases"] and not _audit(app, "rollback")[1:]
    deadline = time.monotonic() + 180
    while app.store.aliases(NAME).get("champion") != 3:
        assert time.monotonic() < deadline, json.dumps(app.status())[:3000]
        app.feedback(app.traffic(300))
        time.sleep(1.5)
    assert app.store.aliases(NAME) == {"champion": 3, "previous": 1}
    steps = [(e["from"], e["to"]) for e in _audit(app, "rollout_step") if e["version"] == 3]
    assert steps == [(0.1, 0.5)]
    promoted = {e["alias"]: (e["from"], e["to"]) for e in _audit(app, "promote")}
    assert promoted == {"champion": (1, 3), "previous": (None, 1), "challenger": (3, None)}
    assert {e["actor"] for e in _audit(app, "promote")} == {"rollout-policy"}
    app.wait(lambda s: s["replica_routing"]["champion"] == 3, "v3 answering")
    assert {app.predict(i)[0] for i in range(20)} == {3}


def test_manual_rollback_and_promote_move_traffic_without_dropping_requests(app: App) -> None:
    statuses: list[int] = []
    halt = threading.Event()

    def load() -> None:
        i = 0
        while not halt.is_set():
            row = app.rows[i % len(app.rows)]
            r = requests.post(
                f"{app.url}/v1/models/{NAME}/predict", json=row, headers={"x-api-key": app.key}
            )
            statuses.append(r.status_code)
            i += 1

    worker = threading.Thread(target=load)
    worker.start()
    try:
        forbidden = app.admin_post("/v1/admin/rollback", key=app.key)
        assert forbidden.status_code == 403
        bad = app.admin_post("/v1/admin/rollback", {"version": "two"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "version"]
        back = app.admin_post("/v1/admin/rollback", {"reason": "pager: error budget"})
        assert back.status_code == 200, back.text
        assert back.json()["aliases"] == {"champion": 1}
        app.wait(lambda s: s["replica_routing"]["champion"] == 1, "v1 answering again")
        nothing = app.admin_post("/v1/admin/rollback")
        assert nothing.status_code == 409 and "nothing to roll back" in nothing.json()["error"]
        done = _cli(app.work, "task=promote", "version=3", *CLEAN)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "champion -> v3" in done.stdout
        app.wait(lambda s: s["replica_routing"]["champion"] == 3, "v3 answering after promote")
    finally:
        halt.set()
        worker.join()
    assert len(statuses) > 50 and set(statuses) == {200}
    manual = [e for e in app.store.audit(NAME)[-4:] if e["alias"] == "champion"]
    assert [(e["action"], e["from"], e["to"]) for e in manual] == [
        ("rollback", 3, 1),
        ("promote", 1, 3),
    ]
    assert manual[0]["actor"] == "api-key:ops" and manual[0]["reason"] == "pager: error budget"
    assert manual[1]["actor"].startswith("cli:")
    assert app.store.verify_audit(NAME) == []


def test_a_shadow_version_is_mirrored_and_never_answers(app: App) -> None:
    app.store.set_alias(NAME, "shadow", 2, actor="ops")
    app.wait(lambda s: s["replica_routing"]["shadow"] == 2, "the shadow loaded")
    before = app.status()["shadow"]
    answered = app.traffic(200)
    assert {v for v, _, _ in answered} == {3}
    status = app.wait(
        lambda s: (
            s["shadow"]["agree"] + s["shadow"]["disagree"]
            >= before["agree"] + before["disagree"] + 200
        ),
        "shadow comparisons recorded",
    )
    assert status["shadow"]["disagree"] > before["disagree"]  # v2 is the shuffled-label model
    app.store.move_aliases(NAME, {"shadow": None}, actor="ops")


def test_feedback_cannot_outvote_or_flood_the_monitor(app: App) -> None:
    _, rid, truth = app.predict(1)
    wrong = "benign" if truth == "malignant" else "malignant"
    before = app.status()["labels"]
    first = app.feedback([(0, rid, truth)])
    copies = app.feedback([(0, rid, wrong)] * 1000)  # the first label for an id wins
    assert first["accepted"] == 1 and copies["duplicates"] == 1000 and copies["matched"] == 0
    unknown = [(0, f"never-{i}", truth) for i in range(400_000)]
    for start in range(0, len(unknown), 10_000):
        app.feedback(unknown[start : start + 10_000])
    labels = app.status()["labels"]
    assert labels["pending"] <= 10_000  # monitor.window.pending_labels
    dropped = labels["dropped"]["pending_cap"] - before["dropped"]["pending_cap"]
    assert dropped >= 390_000, labels
    big = b'{"labels": [' + b'{"id": "x", "label": "benign"},' * 200_000 + b"{}]}"
    too_big = requests.post(f"{app.url}/v1/feedback", data=big, headers={"x-api-key": app.key})
    assert too_big.status_code == 413


def _series(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line[len(name) :].split("}")[0]))
            out.append((labels, float(line.rsplit(" ", 1)[1])))
    return out


def test_prometheus_endpoint_has_the_framework_series(app: App) -> None:
    row = {k: v for k, v in app.rows[0].items() if k != "mean_smoothness"}
    response = requests.post(
        f"{app.url}/v1/models/{NAME}/predict", json=row, headers={"x-api-key": app.key}
    )
    assert response.status_code == 200
    wanted = {
        "ray_framework_requests_total",
        "ray_framework_request_duration_seconds_bucket",
        "ray_framework_batch_rows_bucket",
        "ray_framework_predictions_total",
        "ray_framework_live_quality",
        "ray_framework_live_labels",
        "ray_framework_traffic_share_ratio",
        "ray_framework_feature_drift_psi",
        "ray_framework_feature_drifted",
        "ray_framework_label_feed_age_seconds",
        "ray_framework_imputed_values_total",
        "ray_framework_feedback_labels_dropped_total",
    }
    deadline = time.monotonic() + 60
    while True:
        text = app.scrape()
        missing = {n for n in wanted if not _series(text, n)}
        imputed = _series(text, "ray_framework_imputed_values_total")
        if not missing and any(s[0].get("feature") == "mean_smoothness" for s in imputed):
            break
        assert time.monotonic() < deadline, f"missing {sorted(missing)}"
        time.sleep(1)
    requests_total = _series(text, "ray_framework_requests_total")
    assert any(
        s[0]["version"] == "3" and s[0]["status"] == "200" and s[0]["route"] == "predict"
        for s in requests_total
    )
    assert any(s[0]["status"] == "401" or s[0]["status"] == "403" for s in requests_total)
    assert any(s[0]["version"] == "2" for s in requests_total)  # the challenger's traffic
    quality = _series(text, "ray_framework_live_quality")
    assert any(s[0]["version"] == "1" and s[0]["metric"] == "accuracy" for s in quality)
    shares = {
        s[0]["version"]: s[1]
        for s in _series(text, "ray_framework_traffic_share_ratio")
        if s[0]["alias"] == "champion"
    }
    assert shares.get("3") == 1.0
    drifted = [s for s in _series(text, "ray_framework_feature_drifted") if s[1] == 1.0]
    assert drifted == [], "unshifted traffic must not be flagged"
    # A label feed that stops shows as a growing age, and serving goes on.
    ages = [v for _, v in _series(text, "ray_framework_label_feed_age_seconds")]
    assert ages and ages[0] >= 0


def test_promtool_finds_nothing_to_lint_in_the_framework_series(app: App) -> None:
    """Prometheus' own linter on the scrape: the histograms are real histograms, the counters
    end in _total, every family has HELP and TYPE. Ray's own series are not ours to name."""
    tool = promtool()
    if tool is None:
        pytest.skip("promtool is neither on PATH nor available from apt")
    app.traffic(20)
    deadline = time.monotonic() + 60
    while True:
        text = app.scrape()
        ours = [
            line
            for line in text.splitlines()
            if line.split("{")[0].split(" ")[0].startswith("ray_framework_")
            or (
                line.startswith("# ")
                and line.split()[2:3]
                and line.split()[2].startswith("ray_framework_")
            )
        ]
        types = {line.split()[2]: line.split()[3] for line in ours if line.startswith("# TYPE")}
        if "ray_framework_batch_rows" in types or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert types["ray_framework_request_duration_seconds"] == "histogram"
    assert types["ray_framework_batch_rows"] == "histogram"
    assert types["ray_framework_requests_total"] == "counter"
    # Ray adds its own camelCase labels (Component, NodeAddress, ...) to every series
    ray_labels = re.compile(r'(?:Component|NodeAddress|SessionName|Version|WorkerId)="[^"]*",?')
    exposition = "\n".join(ray_labels.sub("", line).replace(",}", "}") for line in ours) + "\n"
    checked = subprocess.run(
        [tool, "check", "metrics"], input=exposition, capture_output=True, text=True
    )
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr


def test_drift_of_two_shifted_features_is_flagged_by_the_batch_job_and_live(app: App) -> None:
    clean = _cli(app.work, "task=monitor", *CLEAN)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "Drifted features (0/30): none" in clean.stdout

    shifted = _cli(app.work, "task=monitor", *CLEAN, *ONLY, *SHIFTED)
    assert shifted.returncode == 6, shifted.stdout + shifted.stderr
    reports = sorted((app.work / "outputs").rglob("drift-*.json"))
    report = json.loads(reports[-1].read_text())
    assert sorted(report["drifted"]) == sorted(SHIFT)
    assert report["drift"] is True and report["correction"] == "holm"
    assert reports[-1].with_suffix(".html").is_file()
    assert "mean_radius - drifted" in reports[-1].with_suffix(".html").read_text()

    app.traffic(320, _shifted_by_the_noise_simulator())
    status = app.wait(
        lambda s: s["drift"] is not None and sorted(s["drift"]["drifted"]) == sorted(SHIFT),
        "the live window flagging the shifted features",
        timeout=30,
    )
    assert status["drift"]["rows"] == 300
    deadline = time.monotonic() + 30
    while True:
        flagged = sorted(
            s[0]["feature"]
            for s in _series(app.scrape(), "ray_framework_feature_drifted")
            if s[1] == 1.0
        )
        if flagged == sorted(SHIFT):
            break
        assert time.monotonic() < deadline, flagged
        time.sleep(1)


def test_predictions_carry_an_in_distribution_score(app: App) -> None:
    """serve.ood at its default (flag): data like the training data passes, rows moved far
    outside every feature's range are flagged and counted by version."""
    headers = {"x-api-key": app.key}
    url = f"{app.url}/v1/models/{NAME}/predict"
    typical = requests.post(url, json=ROWS[:200], headers=headers, timeout=30)
    assert typical.status_code == 200, typical.text
    predictions = typical.json()["predictions"]
    assert all(0 <= p["in_distribution"] <= 1 for p in predictions)
    assert sum(p["out_of_distribution"] for p in predictions) <= 10
    far = [{k: v * 40 for k, v in row.items()} for row in ROWS[:5]]
    flagged = requests.post(url, json=far, headers=headers, timeout=30)
    assert flagged.status_code == 200, flagged.text
    version = flagged.json()["version"]
    assert all(p["out_of_distribution"] for p in flagged.json()["predictions"])
    deadline = time.monotonic() + 30
    while True:
        counted = _series(app.scrape(), "ray_framework_out_of_distribution_total")
        if sum(v for t, v in counted if t["version"] == str(version)) >= 5:
            break
        assert time.monotonic() < deadline, counted
        time.sleep(1)


def _ready(app: App) -> requests.Response:
    return requests.get(f"{app.url}/readyz", timeout=10)


def test_a_version_that_fails_verification_is_never_served(app: App) -> None:
    """Tampered files: promote refuses; an alias moved by hand is moved back; the served
    version's own files changed on disk make /readyz answer 503 until they are restored."""
    _train(app.work, "train.alias=none")
    store = app.store
    tampered = store.versions(NAME)[-1]
    champion = store.aliases(NAME)["champion"]
    model = tampered.file("model.onnx")
    model.write_bytes(store.get(NAME, champion).file("model.onnx").read_bytes())
    before = store.aliases(NAME)

    done = _cli(app.work, "task=promote", f"version={tampered.version}")
    assert done.returncode == 5, done.stdout + done.stderr
    assert "sha256 of model.onnx" in done.stderr + done.stdout
    assert store.aliases(NAME) == before and "Traceback" not in done.stderr

    answer = app.admin_post("/v1/admin/promote", {"version": tampered.version})
    assert answer.status_code == 409 and "sha256 of model.onnx" in answer.json()["error"]
    assert store.aliases(NAME) == before

    # An alias written by hand, behind the registry's back: the app refuses and moves it back.
    (store.root / NAME / "aliases.json").write_text(
        json.dumps({**before, "champion": tampered.version})
    )
    status = app.wait(
        lambda s: str(tampered.version) in s["verification"]["refused"], "the refusal"
    )
    assert status["aliases"]["champion"] == champion
    assert store.aliases(NAME)["champion"] == champion
    (refused,) = _audit(app, "verification_refused")
    assert refused["version"] == tampered.version
    assert "an alias was moved without an audit entry" in refused["reason"]
    (problem,) = store.verify_all()
    assert f"v{tampered.version}: sha256 of model.onnx" in problem
    assert {app.predict(i)[0] for i in range(5)} == {champion}
    ready = _until(
        lambda: _ready(app), lambda r: "verification" in r.json(), "the refusal on /readyz"
    )
    assert ready.status_code == 200
    assert str(tampered.version) in ready.json()["verification"]["refused"]

    # The served champion's own file changed on disk: not ready, still answered from memory.
    served = store.get(NAME, champion).file("model.onnx")
    original = served.read_bytes()
    served.write_bytes(original + b"\0")
    try:
        body = _until(lambda: _ready(app), lambda r: r.status_code == 503, "readyz 503").json()
        assert body["ready"] is False and f"v{champion} (served from memory)" in body["error"]
        assert app.status()["verification"]["ok"] is False
        assert {app.predict(i)[0] for i in range(3)} == {champion}
        deadline = time.monotonic() + 30
        while not [
            v for t, v in _series(app.scrape(), "ray_framework_registry_verified") if v == 0
        ]:
            assert time.monotonic() < deadline, "framework_registry_verified never went to 0"
            time.sleep(1)
        refusals = _series(app.scrape(), "ray_framework_verification_failures_total")
        assert {t["version"] for t, v in refusals if v >= 1} >= {str(tampered.version)}
    finally:
        served.write_bytes(original)
    _until(lambda: _ready(app), lambda r: r.status_code == 200, "readyz 200 again")


def _until(get: Any, check: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = get()
        if check(found):
            return found
        assert time.monotonic() < deadline, f"{what} not reached in {timeout} s: {found}"
        time.sleep(0.5)
