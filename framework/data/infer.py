"""``task=init``: profile a CSV or Parquet table and write its ``conf/data/<name>.yaml``.

The file is read in chunks (one streaming pass), so a table larger than memory can be
profiled. Per column it infers the dtype (int, float, bool, category or string) with
missing-value tokens recognised, whether it is nullable, its categories below a cardinality
limit, its observed range (widened by a margin, or left open), and its role: id columns are
detected, the target is the one given, sensitive attributes are suggested in a comment but
never set. Every inference that rests on a guess carries an ``# unsure:`` comment.

Invoked as ``python -m framework task=init data.source.path=FILE data.target=COLUMN``
(``data.name``, ``data.source.separator``, ``data.source.encoding``, ``data.source.chunk_rows``
and ``init.*`` settings are optional); it never overwrites an existing file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from framework.config.data import ChecksConfig
from framework.data.files import META, file_format, iter_chunks, resolve_paths
from framework.data.source import DEFAULT_CHUNK_ROWS, snake_case
from framework.errors import ConfigError, FrameworkError

_TRUE = {"true", "yes", "y", "t"}
_FALSE = {"false", "no", "n", "f"}
_ID_NAME = re.compile(r"(^id$|_id$|^id_|uuid|guid|(^|_)key$|number$|^row$|^index$)", re.I)
_SENSITIVE = re.compile(
    r"(sex|gender|race|ethnic|religio|marital|nationality|citizen|disab|pregnan|age$|^age|"
    r"birth|orientation|veteran)",
    re.I,
)
#: Distinct values kept per column (beyond it, a column is "high cardinality").
DISTINCT_CAP = 50_000


@dataclass
class InitSettings:
    """``init.*`` settings of ``task=init``."""

    max_categories: int = 50
    range_margin: float | None = 0.1
    skew_ratio: float = 0.2
    conf_dir: str = "conf"


@dataclass
class ColumnProfile:
    """What one streaming pass saw of one column."""

    name: str
    rows: int = 0
    missing: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    numeric: int = 0
    whole: int = 0
    booleans: int = 0
    other: dict[str, int] = field(default_factory=dict)  # non-numeric texts (capped)
    distinct: dict[str, int] = field(default_factory=dict)
    capped: bool = False
    low: float = math.inf
    high: float = -math.inf
    increasing: bool = True
    last: float | None = None
    typed: str | None = None  # Parquet: the stored type

    @property
    def present(self) -> int:
        return self.rows - self.missing

    def add(self, values: pd.Series, tokens: set[str]) -> None:
        self.rows += len(values)
        if pd.api.types.is_bool_dtype(values.dtype):
            self.typed = "bool"
        elif pd.api.types.is_integer_dtype(values.dtype):
            self.typed = self.typed or "int"
        elif pd.api.types.is_float_dtype(values.dtype):
            self.typed = "float"
        null = values.isna()
        text = values.astype(object).where(~null, None)
        try:
            stripped = text.str.strip().where(text.map(lambda v: isinstance(v, str)), text)
        except AttributeError:  # no text at all in this chunk (typed Parquet values)
            stripped = text
        token = stripped.isin(tokens) & ~null
        for value, count in stripped[token].value_counts().items():
            self.tokens[str(value)] = self.tokens.get(str(value), 0) + int(count)
        missing = null | token
        self.missing += int(missing.sum())
        present = stripped[~missing]
        if present.empty:
            return
        as_text = present.map(str)
        numbers = pd.to_numeric(present, errors="coerce")
        parsed = numbers.notna() & np.isfinite(numbers.fillna(0))
        self.numeric += int(parsed.sum())
        good = numbers[parsed].to_numpy(dtype=np.float64)
        if good.size:
            self.whole += int((good == np.round(good)).sum())
            self.low, self.high = min(self.low, good.min()), max(self.high, good.max())
            if self.increasing:
                steps = np.diff(good)
                if (self.last is not None and good[0] <= self.last) or (steps <= 0).any():
                    self.increasing = False
                self.last = float(good[-1])
        lowered = as_text.str.lower()
        self.booleans += int(lowered.isin(_TRUE | _FALSE).sum())
        if len(self.other) < 100:
            for value, count in as_text[~parsed].value_counts().head(100).items():
                self.other[value] = self.other.get(value, 0) + int(count)
        if not self.capped:
            for value, count in as_text.value_counts().items():
                self.distinct[value] = self.distinct.get(value, 0) + int(count)
            if len(self.distinct) > DISTINCT_CAP:
                self.capped = True
                self.distinct = {}


@dataclass
class Inferred:
    """The declaration of one column, with the notes a person should read."""

    name: str
    spec: dict[str, Any]
    unsure: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def profile(
    files: list[Path], chunk_rows: int, separator: str, encoding: str, tokens: set[str]
) -> tuple[dict[str, ColumnProfile], int]:
    """One streaming pass over ``files``: a profile per column, and the rows read."""
    profiles: dict[str, ColumnProfile] = {}
    rows = 0
    unreadable = 0
    for chunk in iter_chunks(files, chunk_rows, separator=separator, encoding=encoding):
        frame = chunk.frame
        if "__error" in frame.columns:
            bad = frame["__error"].notna()
            unreadable += int(bad.sum())
            frame = frame[~bad]
        rows += len(frame)
        for name in frame.columns:
            if name in META:
                continue
            profiles.setdefault(name, ColumnProfile(name)).add(frame[name], tokens)
    if rows == 0:
        raise FrameworkError(f"{files[0]}: no readable rows to profile", path="data.source.path")
    return profiles, rows


def infer_column(
    p: ColumnProfile, target: str, settings: InitSettings, rows: int
) -> Inferred | None:
    """The declaration of one column (None: every value is missing, leave it out)."""
    out = Inferred(p.name, {})
    spec = out.spec
    if p.present == 0:
        return None
    share = p.missing / p.rows if p.rows else 0.0
    numeric_share = p.numeric / p.present
    distinct = None if p.capped else len(p.distinct)
    is_target = p.name == target
    bool_like = p.typed == "bool" or (p.booleans == p.present and p.typed is None)
    zero_one = (
        distinct is not None and set(p.distinct) <= {"0", "1"} and distinct == 2 and not is_target
    )
    if bool_like or zero_one:
        spec["dtype"] = "bool"
        if zero_one and not bool_like:
            out.unsure.append("only 0 and 1 seen: read as bool (declare int if it counts)")
    elif numeric_share >= 0.995:
        whole = p.whole == p.numeric
        spec["dtype"] = "int" if whole else "float"
        if numeric_share < 1.0:
            bad = ", ".join(repr(v) for v in list(p.other)[:5])
            out.unsure.append(
                f"{p.present - p.numeric} value(s) are not numbers ({bad}): the type check "
                "repairs them to missing"
            )
    elif distinct is not None and distinct <= settings.max_categories:
        spec["dtype"] = "category"
        ordered = sorted(p.distinct.items(), key=lambda kv: (-kv[1], kv[0]))
        spec["categories"] = [k for k, _ in ordered]
        if numeric_share > 0.5:
            out.unsure.append(
                f"{numeric_share:.0%} of values are numbers, the rest text: read as categories"
            )
    else:
        spec["dtype"] = "string"
    # role
    if is_target:
        spec["role"] = "target"
        if spec["dtype"] == "int" and distinct is not None and distinct <= settings.max_categories:
            spec["dtype"] = "category"
            spec["categories"] = sorted(p.distinct, key=_number_key)
            out.notes.append(f"{distinct} whole-number classes: a classification target")
        if spec["dtype"] == "string":
            raise FrameworkError(
                f"data.target: {p.name!r} has {'more than ' if p.capped else ''}"
                f"{distinct or DISTINCT_CAP} distinct text values (limit "
                f"{settings.max_categories}); it cannot be a target",
                path="data.target",
                hint="raise init.max_categories or pick another column",
            )
        if spec["dtype"] == "bool":
            spec["dtype"] = "category"
            spec["categories"] = sorted(p.distinct, key=lambda v: v.lower())
        spec["nullable"] = False
        if spec.get("categories") and not p.capped:
            counts = [p.distinct[c] for c in spec["categories"]]
            smallest = min(counts) / max(counts)
            shares = ", ".join(
                f"{c} {n / sum(counts):.1%}"
                for c, n in zip(spec["categories"], counts, strict=True)
            )
            out.notes.append(f"classes: {shares}")
            if smallest < settings.skew_ratio:
                out.notes.append("skewed: balance.method is set to class_weight below")
    else:
        unique = distinct is not None and distinct == p.present and p.missing == 0
        named = bool(_ID_NAME.search(p.name))
        if spec["dtype"] == "string":
            spec["role"] = "id"
            if not named:
                out.unsure.append(
                    f"high-cardinality text ({'>' if p.capped else ''}"
                    f"{distinct or DISTINCT_CAP} distinct): kept as an id, not a feature"
                )
        elif named and (unique or p.capped) and spec["dtype"] in ("int", "category"):
            spec["role"] = "id"
            spec["dtype"] = "string" if spec["dtype"] == "category" else spec["dtype"]
            spec.pop("categories", None)
        elif unique and spec["dtype"] == "int" and p.increasing and rows >= 20:
            spec["role"] = "id"
            out.unsure.append("every value distinct and increasing: read as an id")
        elif unique and spec["dtype"] == "int" and rows >= 20:
            out.unsure.append("every value distinct: an id? declared a feature")
        if _SENSITIVE.search(p.name) and spec.get("role") != "id":
            out.notes.append(
                "sensitive candidate: set role: sensitive to report fairness by it and keep "
                "it out of the features (not set automatically)"
            )
        spec["nullable"] = p.missing > 0
    if spec["dtype"] in ("int", "float") and spec.get("role") != "id":
        low, high = p.low, p.high
        if settings.range_margin is not None and math.isfinite(low):
            span = (high - low) or abs(high) or 1.0
            wide_low = low - settings.range_margin * span
            wide_high = high + settings.range_margin * span
            if low >= 0 > wide_low:
                wide_low = 0.0  # a non-negative quantity stays non-negative
            if spec["dtype"] == "int":
                wide_low, wide_high = math.floor(wide_low), math.ceil(wide_high)
            spec["min"], spec["max"] = _round(wide_low), _round(wide_high)
            out.notes.append(f"observed {_round(low)} .. {_round(high)}")
    if share:
        tokens = ", ".join(f"{t!r} x{n}" for t, n in sorted(p.tokens.items()))
        out.notes.append(
            f"{share:.1%} missing" + (f" (tokens {tokens})" if tokens else " (empty values)")
        )
    return out


def _number_key(value: str) -> tuple[float, str]:
    try:
        return (float(value), value)
    except ValueError:
        return (math.inf, value)


def _round(value: float) -> float | int:
    if float(value).is_integer():
        return int(value)
    return float(f"{value:.6g}")


def extra_tokens(profiles: dict[str, ColumnProfile], known: set[str]) -> dict[str, int]:
    """Texts that stand for missing values in otherwise numeric columns (``-``, ``unknown``,
    ``-999`` is not one: it is a number): repeated, short, and not numbers."""
    found: dict[str, int] = {}
    for p in profiles.values():
        if p.present == 0 or p.numeric / p.present < 0.9:
            continue
        for value, count in p.other.items():
            text = value.strip()
            if count >= 2 and len(text) <= 12 and text not in known:
                found[text] = found.get(text, 0) + count
    return found


def _yaml_value(value: Any) -> str:
    import yaml

    return (
        yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...")
    )


def render(
    name: str,
    source: dict[str, Any],
    columns: list[Inferred],
    left_out: list[str],
    tokens: list[str] | None,
    balance: bool,
    rows: int,
    origin: str,
) -> str:
    """The data config as YAML text, with a comment on every unsure inference."""
    lines = [
        f"# Written by `python -m framework task=init` from {origin} ({rows:,} rows).",
        "# Every inference marked `unsure` is a guess: read it before training.",
        f"name: {name}",
        "source:",
    ]
    for key, value in source.items():
        lines.append(f"  {key}: {_yaml_value(value)}")
    lines.append("columns:")
    for column in columns:
        comments = [f"unsure: {u}" for u in column.unsure] + column.notes
        for comment in comments:
            lines.append(f"  # {column.name}: {comment}")
        body = ", ".join(f"{k}: {_yaml_value(v)}" for k, v in column.spec.items())
        lines.append(f"  {_yaml_value(column.name)}: {{{body}}}")
    for column in left_out:
        lines.append(f"  # {column}: left out, every value is missing")
    lines.append("checks:")
    lines.append("  outliers: {method: iqr, iqr_k: 3.0, action: flag}")
    if tokens is not None:
        lines.append("  # unsure: these texts stood for missing values in numeric columns")
        lines.append(f"  missing_tokens: {_yaml_value(tokens)}")
    if balance:
        lines.append("balance:")
        lines.append("  method: class_weight")
    return "\n".join(lines) + "\n"


def init_data(
    path: str,
    target: str | None,
    name: str | None,
    separator: str,
    encoding: str,
    chunk_rows: int | None,
    settings: InitSettings,
) -> tuple[Path, str]:
    """Profile ``path`` and write ``<conf_dir>/data/<name>.yaml``; return path and text."""
    if not target:
        raise ConfigError(["data.target: required for task=init (the column to predict)"])
    files = resolve_paths(path, "data.source.path")
    kinds = {file_format(f) for f in files}
    if len(kinds) > 1:
        raise FrameworkError(f"{path!r} names both CSV and Parquet files", path="data.source.path")
    kind = kinds.pop()
    name = snake_case(name or Path(path.rstrip("/*")).stem.split(".")[0])
    out = Path(settings.conf_dir) / "data" / f"{name}.yaml"
    bundled = Path(__file__).resolve().parents[1] / "conf" / "data" / f"{name}.yaml"
    if bundled.exists() and bundled.resolve() != out.resolve():
        raise ConfigError(
            [f"data.name: {name!r} is a bundled data config, which data={name} would load"],
            hint="give the new one another name with data.name=...",
        )
    if out.exists():
        raise ConfigError(
            [f"data.name: {out} exists; task=init never overwrites a data config"],
            hint="remove the file, or give another name with data.name=...",
        )
    defaults = set(ChecksConfig().missing_tokens)
    profiles, rows = profile(files, chunk_rows or DEFAULT_CHUNK_ROWS, separator, encoding, defaults)
    if target not in profiles:
        raise ConfigError(
            [f"data.target: no column {target!r} in {path}; columns: {', '.join(profiles)}"]
        )
    extra = extra_tokens(profiles, defaults)
    if extra:  # a second pass with the extra tokens read as missing
        defaults |= set(extra)
        profiles, rows = profile(
            files, chunk_rows or DEFAULT_CHUNK_ROWS, separator, encoding, defaults
        )
    inferred: list[Inferred] = []
    left_out: list[str] = []
    for column in profiles.values():
        found = infer_column(column, target, settings, rows)
        if found is None:
            left_out.append(column.name)
        else:
            inferred.append(found)
    if not any(c.spec.get("role", "feature") == "feature" for c in inferred):
        raise FrameworkError(f"{path}: no column is usable as a feature", path="data.source.path")
    source: dict[str, Any] = {"type": kind, "path": path}
    if kind == "csv" and separator != ",":
        source["separator"] = separator
    if kind == "csv" and encoding.lower() not in ("utf-8", "utf8"):
        source["encoding"] = encoding
    if chunk_rows:
        source["chunk_rows"] = chunk_rows
    target_spec = next(c for c in inferred if c.name == target)
    balance = any("skewed" in n for n in target_spec.notes)
    tokens = sorted(ChecksConfig().missing_tokens + sorted(extra)) if extra else None
    text = render(name, source, inferred, left_out, tokens, balance, rows, path)
    _check(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text(text)
    partial.rename(out)
    return out, text


def _check(text: str) -> None:
    """The written config must validate as a DataConfig (a bug here, not the user's)."""
    import yaml

    from framework.config.data import DataConfig

    data = yaml.safe_load(text)
    data["source"] = _source_config(data["source"])
    DataConfig(**data)


def _source_config(source: dict[str, Any]) -> Any:
    from framework import registry

    return registry.sources.get(source["type"]).config(**source)


def main(arguments: list[str]) -> int:
    """``python -m framework task=init key=value ...`` without composing the whole config."""
    from rich.console import Console

    from framework.cli import run_guarded, statuses

    values: dict[str, str] = {}
    for argument in arguments:
        key, sep, value = argument.partition("=")
        if not sep:
            raise SystemExit(f"task=init takes key=value arguments, got {argument!r}")
        values[key.lstrip("+")] = value
    allowed = {
        "task", "data.source.path", "data.target", "data.name", "data.source.separator",
        "data.source.encoding", "data.source.chunk_rows", "init.max_categories",
        "init.range_margin", "init.skew_ratio", "init.conf_dir",
    }  # fmt: skip
    console = Console(highlight=False)

    def job() -> int:
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ConfigError(
                [
                    f"{k}: not a task=init setting; valid: {', '.join(sorted(allowed))}"
                    for k in unknown
                ]
            )
        if "data.source.path" not in values:
            raise ConfigError(["data.source.path: required for task=init (a CSV or Parquet file)"])
        margin = values.get("init.range_margin", "0.1")
        settings = InitSettings(
            max_categories=int(values.get("init.max_categories", 50)),
            range_margin=None if margin.lower() in ("null", "none", "") else float(margin),
            skew_ratio=float(values.get("init.skew_ratio", 0.2)),
            conf_dir=values.get("init.conf_dir", "conf"),
        )
        chunk = values.get("data.source.chunk_rows")
        out, text = init_data(
            values["data.source.path"],
            values.get("data.target"),
            values.get("data.name"),
            values.get("data.source.separator", ","),
            values.get("data.source.encoding", "utf-8"),
            int(chunk) if chunk else None,
            settings,
        )
        console.print(text, markup=False, highlight=False, soft_wrap=True)
        console.print(f"Wrote {out}. Train on it with: python -m framework data={out.stem}")
        return 0

    run_guarded(job)
    return max(statuses, default=0)
