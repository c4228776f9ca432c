"""Tables read in chunks: origin of every row, bad input named by file/row/column, and
streaming checks that add up to the checks of the whole table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from framework.config.data import ChecksConfig, ColumnSpec, OutlierCheck
from framework.data.files import ERROR, FILE, ROW, iter_chunks, resolve_paths
from framework.data.validation import REJECT, ValidationReport, validate_frame
from framework.errors import DataValidationError, InputPathError

SCHEMA = {
    "id": ColumnSpec(dtype="int", role="id"),
    "x": ColumnSpec(dtype="float", min=0, max=100),
    "kind": ColumnSpec(dtype="category", categories=["a", "b"]),
    "y": ColumnSpec(dtype="category", role="target", nullable=False, categories=["no", "yes"]),
}


def table(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "id": np.arange(1, rows + 1),
            "x": rng.uniform(0, 100, rows).round(3).astype(object),
            "kind": rng.choice(["a", "b"], rows).astype(object),
            "y": rng.choice(["no", "yes"], rows),
        }
    )
    frame.loc[3, "x"] = "abc"  # type
    frame.loc[10, "x"] = "500"  # range
    frame.loc[20, "kind"] = "zzz"  # category
    frame.loc[30, "x"] = "?"  # missing token
    return frame


def test_csv_chunks_name_file_and_row_and_cover_every_row(tmp_path: Path) -> None:
    table(1000).to_csv(tmp_path / "t.csv", index=False)
    chunks = list(iter_chunks([tmp_path / "t.csv"], 128))
    assert [c.rows for c in chunks] == [128] * 7 + [104]
    joined = pd.concat([c.frame for c in chunks], ignore_index=True)
    assert joined[ROW].tolist() == list(range(1, 1001))
    assert set(joined[FILE]) == {str(tmp_path / "t.csv")}
    assert joined[ERROR].isna().all()
    assert joined.loc[3, "x"] == "abc" and joined.loc[0, "id"] == "1"  # raw text


def test_bad_lines_and_bad_encoding_become_rows_with_their_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"a,b,c\n1,x,2.5\n2,y\n3,z,4.5\n4,w,5\xff5\n5,v,6\n6,u")  # truncated end
    frame = pd.concat([c.frame for c in iter_chunks([path], 2)], ignore_index=True)
    assert frame[ROW].tolist() == [1, 2, 3, 4, 5, 6]
    reasons = dict(zip(frame[ROW], frame[ERROR], strict=True))
    assert reasons[2] == "line has 2 field(s), the header 3"
    assert reasons[4] == "column 'c': not valid utf-8 text"
    assert reasons[6] == "line has 2 field(s), the header 3"
    assert reasons[1] is None and reasons[3] is None and reasons[5] is None


@pytest.mark.parametrize(
    ("make", "error", "text"),
    [
        (lambda d: (d / "empty.csv").write_text(""), DataValidationError, "the file is empty"),
        (lambda d: (d / "h.csv").write_text("a,a\n1,2\n"), DataValidationError, "twice: a"),
        (
            lambda d: (d / "e.parquet").write_bytes(b"PAR1garbage"),
            DataValidationError,
            "not a readable Parquet file",
        ),
    ],
)
def test_unreadable_files_are_named(tmp_path: Path, make, error, text) -> None:
    make(tmp_path)
    (path,) = [p for p in tmp_path.iterdir()]
    with pytest.raises(error) as raised:
        list(iter_chunks([path], 10))
    assert text in str(raised.value) and str(path) in str(raised.value)


def test_paths_name_the_field_when_they_hold_nothing(tmp_path: Path) -> None:
    with pytest.raises(InputPathError, match=r"score.input: the glob .* matches no file"):
        resolve_paths(str(tmp_path / "*.csv"), "score.input")
    with pytest.raises(InputPathError, match="holds no"):
        resolve_paths(str(tmp_path), "data.source.path")
    with pytest.raises(InputPathError, match="no such file or folder"):
        resolve_paths(str(tmp_path / "nope.csv"), "data.source.path")
    (tmp_path / "b.csv").write_text("a\n1\n")
    (tmp_path / "a.parquet").write_bytes(b"")
    assert [p.name for p in resolve_paths(str(tmp_path), "x")] == ["a.parquet", "b.csv"]


def test_parquet_chunks_keep_their_types(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": np.arange(10.0), "k": list("ababababab")})
    frame.to_parquet(tmp_path / "t.parquet", row_group_size=3)
    chunks = list(iter_chunks([tmp_path / "t.parquet"], 4, limit_rows=9))
    assert [c.rows for c in chunks] == [4, 4, 1]
    assert chunks[1].frame["x"].dtype == np.float64
    assert chunks[2].frame[ROW].tolist() == [9]


def test_chunk_reports_add_up_to_the_whole_table_report(tmp_path: Path) -> None:
    raw = table(1000)
    raw.to_csv(tmp_path / "t.csv", index=False)
    checks = ChecksConfig(outliers=OutlierCheck(method="none"), range="drop")
    whole_frame, whole = validate_frame(raw.astype(str), SCHEMA, checks)
    merged = ValidationReport(rows_in=0)
    kept = []
    for chunk in iter_chunks([tmp_path / "t.csv"], 100):
        frame, report = validate_frame(chunk.frame, SCHEMA, checks, whole=False)
        merged.merge(report, checks.max_examples)
        kept.append(frame)
    assert (merged.rows_in, merged.rows_out) == (whole.rows_in, whole.rows_out) == (1000, 999)
    counts = {(f.column, f.kind, f.action): f.count for f in merged.failures}
    assert counts == {(f.column, f.kind, f.action): f.count for f in whole.failures}
    assert merged.dropped_rows == whole.dropped_rows == {"range:x": 1}
    (range_failure,) = merged.failures_of("x", "range")
    assert range_failure.examples == [
        {"row": 11, "value": "500", "file": str(tmp_path / "t.csv"), "id": "11"}
    ]
    pd.testing.assert_frame_equal(pd.concat(kept, ignore_index=True), whole_frame)


def test_reasons_mode_keeps_every_row_and_says_why(tmp_path: Path) -> None:
    strict = ChecksConfig(
        type="drop", range="drop", category="drop", missing="drop", outliers={"method": "none"}
    )
    features = {k: v for k, v in SCHEMA.items() if v.role == "feature"}
    frame, report = validate_frame(table(50), features, strict, whole=False, reasons=True)
    assert len(frame) == 50 and report.rows_out == 47
    why = frame[REJECT]
    assert why[3] == "type check failed in column 'x': value abc"
    assert why[10] == "range check failed in column 'x': value 500"
    assert why[20] == "category check failed in column 'kind': value zzz"
    assert why[30] is None and np.isnan(frame.loc[30, "x"])  # a missing token is missing


def test_streamed_profile_is_exact_where_exact_is_cheap() -> None:
    from framework.config.data import DataConfig
    from framework.data.profile import StreamingProfile, reference_profile
    from plugins.sources.csv import CsvConfig

    data = DataConfig(name="t", source=CsvConfig(path="t.csv"), columns=SCHEMA)
    frame, _ = validate_frame(table(1000).astype(str), SCHEMA, ChecksConfig())
    streamed = StreamingProfile(data, "classification")
    for start in range(0, 1000, 128):
        streamed.add(frame.iloc[start : start + 128])
    sample = frame.sample(100, random_state=0)
    found = streamed.finish(sample)
    whole = reference_profile(frame, data, "classification")
    assert found["rows"] == whole["rows"] == 1000
    for name in ("x", "kind", "y"):
        mine, exact = found["features"][name], whole["features"][name]
        assert mine["count"] == exact["count"]
        assert mine["missing_rate"] == pytest.approx(exact["missing_rate"])
        for key in ("mean", "std", "min", "max"):
            if key in exact:
                assert mine[key] == pytest.approx(exact[key], rel=1e-9), (name, key)
        if "frequencies" in exact:
            assert mine["frequencies"] == pytest.approx(exact["frequencies"])
    # quantiles come from the sample, and say so
    assert found["approximate"]["from"] == "a uniform sample of 100 of 1000 training rows"
    assert (
        found["features"]["x"]["quantiles"]
        == reference_profile(sample, data, "classification")["features"]["x"]["quantiles"]
    )
