"""The out-of-distribution detector (ONNX) and the robustness figures, on breast cancer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from framework.config.train import RobustnessConfig
from framework.export.onnx import export_pipeline
from framework.export.ood import OodScorer, fit_detector
from framework.export.predictor import OnnxPredictor
from framework.export.signature import NUMERIC_INPUT
from framework.governance.robustness import black_box_attack, measure
from framework.serving.handlers import ood_verdict
from framework.training.pipeline import build_pipeline, model_input
from tests.unit.test_data_guards import _config, _frame


@pytest.fixture(scope="module")
def fitted() -> dict:
    data = _config()
    frame = _frame()
    train, test = train_test_split(frame, test_size=0.2, random_state=0, stratify=frame["target"])
    numeric = data.numeric_features
    pipeline = build_pipeline(data, LogisticRegression(max_iter=2000)).fit(
        model_input(train, numeric, []), train["target"]
    )
    exported = export_pipeline(pipeline, numeric, [], "classification")
    predictor = OnnxPredictor(exported.onnx_bytes, exported.signature)
    detector = fit_detector(train[numeric].to_numpy(float), numeric, 0.995, 1.5, 5000, 0)
    scorer = OodScorer(detector.onnx, detector.info)
    return {"train": train, "test": test, "predictor": predictor, "scorer": scorer, "data": data}


def test_test_rows_pass_and_rows_far_outside_every_range_are_flagged(fitted: dict) -> None:
    scorer, test, train = fitted["scorer"], fitted["test"], fitted["train"]
    numeric = fitted["data"].numeric_features
    distance, score = scorer.score(test[numeric].to_numpy(np.float32))
    assert scorer.flagged(distance).mean() <= 0.03
    assert score.min() >= 0 and score.max() <= 1 and np.median(score) > 0.2
    spread = train[numeric].max() - train[numeric].min()
    for far in (test[numeric] + 2 * spread, test[numeric] - 2 * spread):
        distance, score = scorer.score(far.to_numpy(np.float32))
        assert scorer.flagged(distance).all() and score.max() == 0.0
    one = test[numeric].to_numpy(np.float32).copy()
    one[:, numeric.index("worst_area")] *= 20  # one feature far out, the rest typical
    assert scorer.flagged(scorer.score(one)[0]).all()
    missing = test[numeric].to_numpy(np.float32).copy()
    missing[:, 0] = np.nan  # a missing value counts as the training median
    assert np.isfinite(scorer.score(missing)[0]).all()


def test_rows_built_by_a_black_box_attack_are_mostly_flagged(fitted: dict) -> None:
    predictor, scorer, test, train = (fitted[k] for k in ("predictor", "scorer", "test", "train"))
    numeric = fitted["data"].numeric_features
    std = train[numeric].std().to_numpy()
    found = black_box_attack(predictor, test.head(20), std, RobustnessConfig(), seed=0)
    assert found.turned.mean() >= 0.5 and found.queries > 0
    distance, _ = scorer.score(found.adversarial[found.turned].astype(np.float32))
    assert scorer.flagged(distance).mean() >= 0.6  # 0.6-0.7 over seeds 0-5; 0.7 at 0
    again = black_box_attack(predictor, test.head(20), std, RobustnessConfig(), seed=0)
    np.testing.assert_array_equal(again.adversarial, found.adversarial)  # seeded
    turned = predictor.run({NUMERIC_INPUT: found.adversarial[found.turned].astype(np.float32)})
    before = predictor.run({NUMERIC_INPUT: found.original[found.turned].astype(np.float32)})
    assert (turned.labels != before.labels).all()


def test_the_serving_policy_flags_or_names_the_rows_it_refuses(fitted: dict) -> None:
    scorer, test = fitted["scorer"], fitted["test"]
    numeric = fitted["data"].numeric_features
    rows = test[numeric].head(4).to_numpy(np.float32).copy()
    rows[2] *= 50
    assert ood_verdict("off", scorer, rows) == (None, None, [])
    score, flagged, problems = ood_verdict("flag", scorer, rows)
    assert flagged.tolist() == [False, False, True, False] and not problems
    assert score[2] == 0.0 and min(score[[0, 1, 3]]) > 0
    _, _, problems = ood_verdict("reject", scorer, rows)
    (problem,) = problems
    assert problem.row == 2 and problem.type == "out_of_distribution"
    assert "out of the training distribution" in problem.msg and "IQR" in problem.msg


def test_robustness_figures_cover_each_feature_and_the_attack(fitted: dict) -> None:
    predictor, scorer, test, train = (fitted[k] for k in ("predictor", "scorer", "test", "train"))
    figures = measure(predictor, test, "target", train, RobustnessConfig(), scorer, 0)
    assert figures["metric"] == "accuracy" and figures["clean"] > 0.9
    assert set(figures["per_feature"]) == set(fitted["data"].numeric_features)
    assert 0.8 < figures["all_features"] <= 1.0
    attack = figures["attack"]
    assert attack["rows"] == 20 and attack["queries"] > 0 and attack["seconds"] > 0
    assert 0 <= attack["accuracy_under_attack"] <= figures["clean"] + 0.05
    assert attack["flagged_by_ood_share"] >= 0.6
    assert isinstance(pd.Series(figures["per_feature"]).idxmin(), str)
