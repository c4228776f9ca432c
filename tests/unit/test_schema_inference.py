"""``task=init``: a data config inferred from a table nobody described, compared with pandera.

The generated table has every dtype, missing-value tokens (some pandas does not know), an id
column, a free-text column, an empty column, a sensitive candidate and a skewed target.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from framework.config.data import DataConfig
from framework.data.infer import InitSettings, init_data
from framework.errors import ConfigError
from plugins.sources.csv import CsvConfig

ROOT = Path(__file__).resolve().parents[2]


def generated(rows: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(1000, 1000 + rows),
            "age": rng.integers(18, 90, rows).astype(object),
            "income": rng.lognormal(10, 0.5, rows).round(2).astype(object),
            "score": rng.normal(0, 1, rows).round(4).astype(object),
            "visits": rng.poisson(3, rows),
            "active": rng.choice(["yes", "no"], rows),
            "flag01": rng.choice([0, 1], rows),
            "plan": rng.choice(["basic", "plus", "pro"], rows, p=[0.6, 0.3, 0.1]),
            "gender": rng.choice(["f", "m", "x"], rows),
            "note": [f"free text {i}" for i in range(rows)],
            "empty": [""] * rows,
            "label": np.where(rng.random(rows) < 0.08, "fraud", "ok"),
        }
    )
    picked = rng.choice(rows, 150, replace=False)
    frame.loc[picked[:50], "age"] = "?"  # a token pandas does not know
    frame.loc[picked[50:100], "income"] = "N/A"  # one it does
    frame.loc[picked[100:], "score"] = "-"  # one nobody declared: inferred
    return frame


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, str, dict]:
    generated().to_csv(tmp_path / "new.csv", index=False)
    out, text = init_data(
        str(tmp_path / "new.csv"),
        "label",
        None,
        ",",
        "utf-8",
        500,  # streamed in chunks of 500 rows
        InitSettings(conf_dir=str(tmp_path / "conf")),
    )
    return out, text, yaml.safe_load(text)


def test_every_inference_and_its_comment(written: tuple[Path, str, dict]) -> None:
    out, text, data = written
    assert out.name == "new.yaml" and out.read_text() == text
    columns = data["columns"]
    assert columns["customer_id"] == {"dtype": "int", "role": "id", "nullable": False}
    assert columns["age"] == {"dtype": "int", "nullable": True, "min": 10, "max": 97}
    assert columns["income"]["dtype"] == "float" and columns["income"]["min"] == 0
    assert columns["score"]["dtype"] == "float" and columns["score"]["nullable"] is True
    assert columns["visits"]["dtype"] == "int" and columns["visits"]["nullable"] is False
    assert columns["active"] == {"dtype": "bool", "nullable": False}
    assert columns["flag01"]["dtype"] == "bool"
    assert columns["plan"]["categories"] == ["basic", "plus", "pro"]  # by frequency
    assert columns["gender"]["dtype"] == "category" and "role" not in columns["gender"]
    assert columns["note"] == {"dtype": "string", "role": "id", "nullable": False}
    assert "empty" not in columns
    assert columns["label"] == {
        "dtype": "category",
        "categories": ["ok", "fraud"],
        "role": "target",
        "nullable": False,
    }
    assert data["balance"] == {"method": "class_weight"}
    assert "-" in data["checks"]["missing_tokens"] and "?" in data["checks"]["missing_tokens"]
    assert data["source"] == {"type": "csv", "path": str(out.parents[2] / "new.csv"),
                              "chunk_rows": 500}  # fmt: skip
    # comments on what was guessed, and on what a person must decide
    assert "# flag01: unsure: only 0 and 1 seen" in text
    assert "# note: unsure: high-cardinality text" in text
    assert "# gender: sensitive candidate" in text and "# age: sensitive candidate" in text
    assert "# empty: left out, every value is missing" in text
    assert "# label: skewed" in text
    assert "# age: 1.7% missing (tokens '?' x50)" in text
    # and it is a valid data config
    data["source"] = CsvConfig(**data["source"])
    assert DataConfig(**data).target == "label"


def test_init_never_overwrites(written: tuple[Path, str, dict]) -> None:
    out, text, _ = written
    with pytest.raises(ConfigError, match="never overwrites"):
        init_data(
            str(out.parents[2] / "new.csv"), "label", None, ",", "utf-8", None,
            InitSettings(conf_dir=str(out.parents[1])),
        )  # fmt: skip
    assert out.read_text() == text


def test_cli_refuses_a_missing_target_and_an_existing_file(tmp_path: Path) -> None:
    generated(200).to_csv(tmp_path / "t.csv", index=False)

    def init(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "framework", "task=init", "data.source.path=t.csv", *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    missing = init()
    assert missing.returncode == 2 and "data.target: required" in missing.stderr
    wrong = init("data.target=nope")
    assert wrong.returncode == 2 and "data.target: no column 'nope'" in wrong.stderr
    first = init("data.target=label")
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "conf" / "data" / "t.yaml").is_file()
    again = init("data.target=label")
    assert again.returncode == 2 and "never overwrites" in again.stderr


def test_where_pandera_infers_otherwise(written: tuple[Path, str, dict]) -> None:
    """pandera's ``infer_schema`` on the same table, read the usual way (``pd.read_csv``).

    It sees pandas' dtypes: a token pandas does not know ('?', '-') turns a numeric column
    into text, yes/no stays text, categories get no allowed-value check, an id is a bounded
    integer feature and ranges are the exact observed ones. Ours reads every value as text
    first, so the tokens become missing values and the rest follows the content.
    """
    import pandera.pandas as pandera

    out, _, data = written
    frame = pd.read_csv(out.parents[2] / "new.csv")
    schema = pandera.infer_schema(frame)
    theirs = {name: column for name, column in schema.columns.items()}
    ours = data["columns"]

    def kind(name: str) -> str:
        return str(theirs[name].dtype)

    # missing tokens pandas does not know: text there, numbers here
    assert "str" in kind("age") and ours["age"]["dtype"] == "int"
    assert "str" in kind("score") and ours["score"]["dtype"] == "float"
    # 'N/A' is a pandas token: both read a nullable float
    assert kind("income") == "float64" and theirs["income"].nullable
    assert ours["income"]["dtype"] == "float" and ours["income"]["nullable"]
    # ranges: pandera's are the observed extremes, ours are widened by init.range_margin
    low = min(c.statistics.get("min_value", np.inf) for c in theirs["income"].checks)
    assert low == pytest.approx(frame["income"].min()) and ours["income"]["min"] == 0
    # an id column: a bounded integer for pandera, an id (not a feature) here
    assert kind("customer_id") == "int64" and ours["customer_id"]["role"] == "id"
    # yes/no and 0/1: text and int there, bool here
    assert "str" in kind("active") and ours["active"]["dtype"] == "bool"
    assert kind("flag01") == "int64" and ours["flag01"]["dtype"] == "bool"
    # categories: no allowed-value check there
    assert not theirs["plan"].checks and ours["plan"]["categories"]
    # the empty column: a nullable float there, left out here
    assert kind("empty") == "float64" and "empty" not in ours


def test_init_refuses_the_name_of_a_bundled_config(tmp_path: Path) -> None:
    generated(300).to_csv(tmp_path / "churn.csv", index=False)
    with pytest.raises(ConfigError, match="'churn' is a bundled data config"):
        init_data(
            str(tmp_path / "churn.csv"), "label", None, ",", "utf-8", None,
            InitSettings(conf_dir=str(tmp_path / "conf")),
        )  # fmt: skip
    assert not (tmp_path / "conf").exists()
