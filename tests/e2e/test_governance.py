"""Governance through the CLI: fairness and champion gates, batch explanations, model cards
and reproduction of a version, as a user runs them."""

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
from tests.e2e.conftest import Runner, cli_env, free_port
from tests.processes import start_until

pytestmark = pytest.mark.e2e

CHURN = ["data=churn", "model=logistic_regression", "train.latency_runs=20"]
BIASED = [
    "data.noise.enabled=true",
    "data.noise.label_bias={column:region,group:south,label:'yes',rate:0.5}",
]


def _out(run: object) -> str:
    return run.stdout + run.stderr  # type: ignore[attr-defined]


def test_fairness_and_champion_gates(cli: Runner, tmp_path: Path) -> None:
    """The unbiased churn model passes the fairness gate; one trained on labels biased
    against a region is refused (exit 4) naming the column, groups and figures; a model
    trained on shuffled labels is registered but never aliased, and the refusal audited."""
    fair = cli(*CHURN)
    assert fair.returncode == 0, _out(fair)
    store = ModelRegistry(tmp_path / "model_registry")
    v1 = store.get("churn", 1)
    fairness = v1.manifest["gates"]["fairness"]
    assert fairness["columns"][0]["column"] == "region" and not fairness["breaches"]
    assert set(fairness["columns"][0]["groups"]) == {"north", "south", "east", "west"}

    biased = cli(*CHURN, *BIASED)
    assert biased.returncode == 4, _out(biased)
    message = _out(biased)
    assert "fairness gate refused the model: region: equalized odds difference" in message
    assert "south" in message and "true-positive rate" in message
    assert [v.version for v in store.versions("churn")] == [1]  # nothing registered

    useless = cli(*CHURN, "data.noise.enabled=true", "data.noise.label_shuffle=true")
    assert useless.returncode == 0, _out(useless)
    assert "Not made challenger (champion gate against v1): f1_macro" in useless.stdout
    assert store.aliases("churn") == {"champion": 1}
    v2 = store.get("churn", 2)
    assert v2.aliases == [] and not v2.manifest["gates"]["champion"]["passed"]
    refused = [e for e in store.audit("churn") if e["action"] == "challenger_refused"]
    assert refused and refused[-1]["version"] == 2 and "f1_macro" in refused[-1]["reason"]
    assert not store.verify_audit("churn")

    good = cli(*CHURN, "train.seed=7")  # as good as the champion: it becomes challenger
    assert good.returncode == 0, _out(good)
    assert store.aliases("churn") == {"champion": 1, "challenger": 3}


def test_default_experiment_explains_cards_and_reproduces(cli: Runner, tmp_path: Path) -> None:
    trained = cli()
    assert trained.returncode == 0, _out(trained)
    version = ModelRegistry(tmp_path / "model_registry").get("breast_cancer", 1)
    explain = version.manifest["explain"]
    assert explain["method"] == "tree" and explain["shap_agreement_max_diff"] <= 1e-6
    assert explain["additivity_gap"] <= 1e-5

    # the Hugging Face card, its plots and the HTML, written at registration
    card = (version.path / "model_card.md").read_text()
    front = card.split("---\n")[1]
    assert "model-index:" in front and "datasets:\n- breast_cancer" in front
    for heading in (
        "Intended use",
        "Out-of-scope use",
        "Limitations",
        "Training data",
        "Poisoning and leakage guards",
        "Evaluation",
        "Fairness",
        "Global feature importance",
        "Robustness and out-of-distribution input",
        "Optimization",
        "Lineage",
        "To do",
    ):
        assert f"# {heading}" in card, heading
    assert "TO DO: not stated (card.intended_use)" in card
    assert "| label errors | flag | " in card and "confident learning (cleanlab" in card
    assert "| leakage across splits | drop | validation: 0 exact" in card
    assert "Black-box attack: HopSkipJump" in card and "detector.onnx" in card
    for plot in (
        "card_confusion.png",
        "card_roc.png",
        "card_pr.png",
        "card_calibration.png",
        "card_importance.png",
    ):
        assert (version.path / plot).read_bytes()[:4] == b"\x89PNG", plot
        assert plot in (version.path / "model_card.html").read_text()

    again = cli(
        "task=card",
        "version=1",
        "card.intended_use=Second opinion for screening.",
        "hydra.run.dir=card_run",
    )
    assert again.returncode == 0, _out(again)
    rendered = (tmp_path / "card_run" / "card" / "model_card.md").read_text()
    assert "Second opinion for screening." in rendered and "- Intended use" not in rendered

    # task=explain over a CSV: Parquet attributions that add up, and an HTML report
    from framework.monitoring.drift import load_reference

    features, _ = load_reference(version.file("reference.npz").read_bytes())
    pd.DataFrame(features).head(300).to_csv(tmp_path / "rows.csv", index=False)
    explained = cli("task=explain", "explain.input=rows.csv", "hydra.run.dir=explain_run")
    assert explained.returncode == 0, _out(explained)
    assert "Explained 300 rows with breast_cancer v1 (tree)" in explained.stdout
    table = pd.read_parquet(tmp_path / "explain_run" / "explanations.parquet")
    assert len(table) == 300
    attributions = table[[c for c in table.columns if c.startswith("attribution.malignant.")]]
    assert attributions.shape[1] == 30
    total = table["base.malignant"] + attributions.sum(axis=1)
    assert (total - table["output.malignant"]).abs().max() < 1e-5
    report = (tmp_path / "explain_run" / "explanations.html").read_text()
    assert report.count("data:image/png;base64,") == 2

    # the served route gives the same exact attributions as the batch task
    key, _ = add_key(tmp_path / "api_keys.json", "client", ["predict"])
    port = free_port()
    argv = [sys.executable, "-m", "framework", "task=serve", f"serve.port={port}"]
    proc, _ = start_until(argv, cwd=tmp_path, env=cli_env())
    try:
        records = pd.read_csv(tmp_path / "rows.csv").head(3)
        body = records.astype(object).where(records.notna(), None).to_dict("records")
        answer = requests.post(
            f"http://127.0.0.1:{port}/v1/models/breast_cancer/explain",
            json=body,
            headers={"x-api-key": key},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        served = answer.json()
        assert (served["method"], served["exact"], served["output_space"]) == (
            "tree",
            True,
            "probability",
        )
        for i, row in enumerate(served["explanations"]):
            part = row["malignant"]
            for column, value in part["attributions"].items():
                assert abs(value - table[f"attribution.malignant.{column}"][i]) < 1e-9, column
            total = part["base_value"] + sum(part["attributions"].values())
            assert abs(total - part["output"]) < 1e-9
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(90)

    # reproduce: identical, then refused once the data it was trained on has changed
    same = cli("task=reproduce", "version=1")
    assert same.returncode == 0, _out(same)
    assert "Reproduced breast_cancer v1." in same.stdout
    assert "labels agree on 100.00%" in same.stdout


def test_reproduce_stops_when_the_data_changed(cli: Runner, tmp_path: Path) -> None:
    from plugins.sources.synthetic_churn import SyntheticChurnConfig, SyntheticChurnSource

    frame = SyntheticChurnSource(SyntheticChurnConfig(rows=600)).load()
    frame.to_csv(tmp_path / "churn.csv", index=False)
    source = ["~data.source", f"+data.source={{type:csv,path:{tmp_path / 'churn.csv'}}}"]
    trained = cli(*CHURN, *source)
    assert trained.returncode == 0, _out(trained)
    frame.loc[frame.index[:40], "support_calls"] += 3
    frame.to_csv(tmp_path / "churn.csv", index=False)
    changed = cli("task=reproduce", "version=1", "data=churn")
    assert changed.returncode == 8, _out(changed)
    assert "the data changed: its fingerprint is" in _out(changed)
    manifest = json.loads((tmp_path / "model_registry/churn/versions/1/manifest.json").read_text())
    assert manifest["data"]["fingerprint"][:16] in _out(changed)
