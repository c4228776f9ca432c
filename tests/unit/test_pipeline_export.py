"""The fitted pipeline exports to one ONNX graph that ONNX Runtime runs like scikit-learn."""

from __future__ import annotations

import numpy as np
import onnx
import pandas as pd
import pytest
from sklearn.ensemble import GradientBoostingClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression

from framework.config import DataConfig
from framework.config.train import ParityConfig
from framework.errors import FrameworkError, ModelRefusedError
from framework.export.onnx import export_pipeline
from framework.export.parity import check_parity
from framework.export.predictor import OnnxPredictor
from framework.training.clipping import OutlierClipper
from framework.training.pipeline import build_pipeline, model_input
from tests.helpers import SMALL_SCHEMA, small_frame


def _data(**cleaning: object) -> DataConfig:
    from framework.registry import load_plugins

    load_plugins()
    from plugins.sources.csv import CsvConfig

    return DataConfig(
        name="churn",
        source=CsvConfig(path="unused.csv"),
        columns=SMALL_SCHEMA,  # type: ignore[arg-type]
        cleaning=cleaning,  # type: ignore[arg-type]
    )


def _fit(
    data: DataConfig, estimator: object, frame: pd.DataFrame, scale: bool = True
) -> tuple[object, pd.DataFrame]:
    X = model_input(frame, data.numeric_features, data.categorical_features)
    pipeline = build_pipeline(data, estimator, scale=scale).fit(X, frame[data.target])
    return pipeline, X


def _predictor(pipeline: object, data: DataConfig, task: str) -> OnnxPredictor:
    exported = export_pipeline(pipeline, data.numeric_features, data.categorical_features, task)
    return OnnxPredictor(exported.onnx_bytes, exported.signature)


@pytest.mark.parametrize("imputation", ["constant", "most_frequent"])
@pytest.mark.parametrize("encoding", ["onehot", "ordinal"])
def test_categorical_pipeline_exports_with_parity(encoding: str, imputation: str) -> None:
    data = _data(encoding=encoding, categorical_imputation=imputation)
    frame = small_frame()
    frame.loc[::17, "plan"] = None
    frame.loc[::13, "income"] = np.nan
    pipeline, X = _fit(data, LogisticRegression(max_iter=500), frame)
    exported = export_pipeline(
        pipeline, data.numeric_features, data.categorical_features, "classification"
    )
    model = onnx.load_from_string(exported.onnx_bytes)
    assert [i.name for i in model.graph.input] == ["numeric", "categorical"]
    assert exported.signature.classes == ["no", "yes"]
    predictor = OnnxPredictor(exported.onnx_bytes, exported.signature)
    report = check_parity(pipeline, predictor, X, ParityConfig())
    assert report.label_agreement == 1.0 and report.max_abs_diff < 1e-5


def test_unseen_category_and_missing_values_are_handled_in_onnx() -> None:
    data = _data()
    pipeline, _ = _fit(data, GradientBoostingClassifier(n_estimators=20), small_frame())
    predictor = _predictor(pipeline, data, "classification")
    records = [
        {"age": 40, "income": 52000.0, "plan": "enterprise"},  # unseen category
        {"age": None, "income": 52000.0},  # missing numeric, missing category
    ]
    got = predictor.predict_records(records)
    frame = pd.DataFrame(records)
    expected = pipeline.predict_proba(
        model_input(frame, data.numeric_features, data.categorical_features)
    )
    np.testing.assert_allclose(got.scores, expected, atol=1e-5)
    assert set(got.labels) <= {"no", "yes"}


def test_records_and_frames_give_the_same_predictions() -> None:
    data = _data()
    frame = small_frame()
    pipeline, _X = _fit(data, LogisticRegression(max_iter=500), frame)
    predictor = _predictor(pipeline, data, "classification")
    records = frame[data.features].head(20).to_dict("records")
    from_records = predictor.predict_records(records)
    from_frame = predictor.predict_frame(frame.head(20))
    np.testing.assert_array_equal(from_records.labels, from_frame.labels)
    np.testing.assert_allclose(from_records.scores, from_frame.scores)


def test_regressor_exports_with_parity() -> None:
    data = _data().model_copy(
        update={
            "columns": {
                **_data().columns,
                "churn": _data().columns["churn"].model_copy(update={"role": "feature"}),
                "income": _data().columns["income"].model_copy(update={"role": "target"}),
            }
        }
    )
    frame = small_frame()
    # tree models are fitted without scaling, as the train job does (scale_invariant)
    forest = RandomForestRegressor(n_estimators=10, random_state=0)
    pipeline, X = _fit(data, forest, frame, scale=False)
    predictor = _predictor(pipeline, data, "regression")
    report = check_parity(pipeline, predictor, X, ParityConfig(atol=1e-2, rtol=1e-5))
    assert report.passed and report.label_agreement == 1.0


def test_parity_failure_refuses_the_model_with_a_clear_message() -> None:
    data = _data()
    frame = small_frame()
    pipeline, X = _fit(data, LogisticRegression(max_iter=500), frame)
    predictor = _predictor(pipeline, data, "classification")
    other, _ = _fit(data, LogisticRegression(C=1e-4, max_iter=500), frame)  # a different model
    with pytest.raises(ModelRefusedError) as info:
        check_parity(other, predictor, X, ParityConfig())
    assert "ONNX export disagrees with the trained pipeline" in str(info.value)
    assert "the model was not registered" in str(info.value)


def test_outlier_clipper_fits_fences_and_exports_the_same_clip() -> None:
    X = np.array([[1.0], [2.0], [3.0], [4.0], [100.0]])
    clipper = OutlierClipper("iqr", 1.5).fit(X)
    assert clipper.upper_[0] == pytest.approx(4 + 1.5 * 2)
    assert clipper.transform(np.array([[1000.0]]))[0, 0] == pytest.approx(7.0)
    z = OutlierClipper("zscore", 1.0).fit(X)
    assert z.transform(np.array([[1e6]]))[0, 0] == pytest.approx(X.mean() + X.std())


def test_frame_missing_a_feature_column_is_a_clear_error() -> None:
    data = _data()
    frame = small_frame()
    pipeline, _ = _fit(data, LogisticRegression(max_iter=500), frame)
    predictor = _predictor(pipeline, data, "classification")
    with pytest.raises(FrameworkError, match="missing feature column\\(s\\): income"):
        predictor.predict_frame(frame.drop(columns=["income"]))
