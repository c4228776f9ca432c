"""Data at any size, as a user meets it: a table nobody described, chunked training, a
warm-started update, and batch scoring on Ray Data with bad rows in the input."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pandas as pd
import pytest
import requests

from framework.security.keys import add_key
from framework.store.registry import ModelRegistry
from tests.e2e.conftest import ROOT, Runner, cli_env, free_port
from tests.processes import start_until
from tests.unit.test_schema_inference import generated

pytestmark = pytest.mark.e2e


def _out(run: object) -> str:
    return getattr(run, "stdout", "") + getattr(run, "stderr", "")


def test_init_then_train_score_monitor_and_serve_with_no_edit(cli: Runner, tmp_path: Path) -> None:
    generated(2000, seed=0).to_csv(tmp_path / "new.csv", index=False)
    init = cli("task=init", "data.source.path=new.csv", "data.target=label")
    assert init.returncode == 0, _out(init)
    assert "Wrote conf/data/new.yaml" in init.stdout

    trained = cli("data=new", "train.latency_runs=5")
    assert trained.returncode == 0, _out(trained)
    assert "Registered new version 1 as champion" in trained.stdout

    # new rows in a folder: a CSV with bad values, a Parquet file, a broken CSV
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    fresh = generated(1500, seed=1).astype(object)
    fresh.loc[5, "visits"] = "many"  # not a number
    fresh.loc[6, "plan"] = "platinum"  # an unknown category
    fresh.iloc[:1000].to_csv(incoming / "a.csv", index=False)
    fresh.iloc[1000:].astype(str).to_parquet(incoming / "b.parquet", index=False)
    header = ",".join(fresh.columns)
    good_line = ",".join(str(v) for v in fresh.iloc[0].tolist())
    (incoming / "c.csv").write_bytes(
        f"{header}\n{good_line}\n".encode() + b"1,2,3\n" + good_line.encode()[:-4]
    )

    scored = cli(
        "task=score", "data=new", "score.input=incoming", "score.batch_rows=400",
        "hydra.run.dir=score_run",
    )  # fmt: skip
    assert scored.returncode == 0, _out(scored)
    results = tmp_path / "score_run" / "scores"
    summary = json.loads((results / "summary.json").read_text())
    assert summary["rows_in"] == 1503 == summary["scored"] + summary["rejected"]
    assert summary["rejected"] == 4  # 'many', 'platinum', a short line, a truncated line
    predictions = pd.read_parquet(results / "predictions")  # Parquet parts, one per block
    rejects = pd.read_parquet(results / "rejects")
    assert len(predictions) == summary["scored"] and len(rejects) == 4
    assert set(predictions["version"]) == {1}
    assert set(predictions["prediction"]) <= {"ok", "fraud"}
    assert predictions["customer_id"].notna().all()
    by_row = {(Path(f).name, r): why for f, r, why in rejects[
        ["source_file", "source_row", "reject_reason"]].itertuples(index=False)}  # fmt: skip
    assert by_row[("a.csv", 6)] == "type check failed in column 'visits': value many"
    assert by_row[("a.csv", 7)] == "category check failed in column 'plan': value platinum"
    assert by_row[("c.csv", 2)] == "line has 3 field(s), the header 12"
    assert by_row[("c.csv", 3)].startswith("line has ")
    assert (results / "drift.html").is_file() and summary["drift"] is not None
    assert not list(tmp_path.glob("score_run/.scores*"))  # written beside, renamed in place

    # bad input: named, exit 2, and no partial output posing as complete
    (tmp_path / "empty.csv").write_text("")
    for value, expected in (
        ("nothing/*.csv", "score.input: the glob 'nothing/*.csv' matches no file"),
        ("empty.csv", "empty.csv: the file is empty"),
    ):
        bad = cli("task=score", "data=new", f"score.input={value}", "hydra.run.dir=bad_run")
        assert bad.returncode in (2, 3), _out(bad)
        assert expected in bad.stderr, bad.stderr
        assert not (tmp_path / "bad_run" / "scores").exists()

    monitored = cli("task=monitor", "data=new", "monitor.data_path=incoming/a.csv")
    assert monitored.returncode in (0, 6), _out(monitored)
    assert "drift of new v1 inputs" in monitored.stdout

    key, _ = add_key(tmp_path / "api_keys.json", "client", ["predict"])
    port = free_port()
    argv = [sys.executable, "-m", "framework", "task=serve", "data=new", f"serve.port={port}"]
    proc, _ = start_until(argv, cwd=tmp_path, env=cli_env())
    try:
        row = generated(200, seed=3).head(5).drop(columns=["label", "empty", "note", "customer_id"])
        body = row.astype(object).where(row.notna(), None).to_dict("records")
        for record in body:  # the served API takes typed values, and None for missing
            for name in ("age", "income", "score"):
                if record[name] in ("?", "N/A", "-"):
                    record[name] = None
            record["active"] = record["active"] == "yes"
            record["flag01"] = bool(record["flag01"])
        answer = requests.post(
            f"http://127.0.0.1:{port}/v1/models/new/predict",
            json=json.loads(json.dumps(body, default=str)),
            headers={"x-api-key": key},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"]) == 5
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(90)


def test_chunked_training_and_a_warm_started_update(cli: Runner, tmp_path: Path) -> None:
    from plugins.sources.synthetic_churn import SyntheticChurnConfig, SyntheticChurnSource

    SyntheticChurnSource(SyntheticChurnConfig(rows=6000, seed=0)).load().to_csv(
        tmp_path / "churn.csv", index=False
    )
    SyntheticChurnSource(SyntheticChurnConfig(rows=3000, seed=1)).load().to_csv(
        tmp_path / "later.csv", index=False
    )
    common = (
        "model=sgd_classifier", "gates.fairness.enabled=false",
        "train.latency_runs=5", "data.stream.sample_rows=1000",
    )  # fmt: skip
    # the same schema over a CSV file, in a conf/ folder of the working directory
    churn = (ROOT / "conf" / "data" / "churn.yaml").read_text()
    (tmp_path / "conf" / "data").mkdir(parents=True)
    (tmp_path / "conf" / "data" / "churn_csv.yaml").write_text(
        churn.replace("name: churn\n", "name: churn\n").replace(
            "source:\n  type: synthetic_churn\n  rows: 2000\n  seed: 0\n",
            "source:\n  type: csv\n  path: churn.csv\n  chunk_rows: 700\n",
        )
    )
    first = cli(*common, "data=churn_csv")
    assert first.returncode == 0, _out(first)
    assert "streamed: 9 chunks of 700 rows x 5 epoch(s)" in first.stdout
    store = ModelRegistry(tmp_path / "model_registry")
    v1 = store.get("churn", 1)
    stream = v1.manifest["stream"]
    assert sum(stream["rows"].values()) == 6000 and stream["samples"]["train"] == 1000
    assert v1.manifest["data"]["splits"] == stream["rows"]
    assert v1.manifest["metrics"]["test"]["accuracy"] > 0.7
    assert (v1.path / "pipeline.skops").is_file()

    # the in-memory random forest cannot stream: refused by name
    refused = cli("data=churn", "data.source.chunk_rows=700")
    assert refused.returncode == 2
    assert "model.type: 'random_forest' cannot train over chunks" in refused.stderr

    updated = cli(
        *common, "task=update", "version=1", "data=churn_csv",
        "data.source.path=later.csv", "gates.champion.enabled=false",
    )  # fmt: skip
    assert updated.returncode == 0, _out(updated)
    assert "continue v1's sgd_classifier chunk by chunk" in updated.stdout
    v2 = store.get("churn", 2)
    assert v2.manifest["parent"] == 1 and store.aliases("churn")["challenger"] == 2
    assert v2.manifest["data"]["fingerprint"] != v1.manifest["data"]["fingerprint"]

    # a version without a fitted pipeline file cannot be continued
    forest = cli("data=churn", "gates.fairness.enabled=false", "train.latency_runs=5")
    assert forest.returncode == 0, _out(forest)
    cannot = cli("task=update", "version=3", "data=churn")
    assert cannot.returncode in (2, 5), _out(cannot)
    assert "cannot continue training" in cannot.stderr or "pipeline.skops" in cannot.stderr
