"""Tables on disk read in bounded chunks: a CSV or Parquet file, a folder of them, or a glob.

Every chunk knows where its rows came from (file and row number), so a bad row can be named
by file, row and column wherever it ends up: in the validation report, in a rejects file.
Reading never holds more than one chunk of one file in memory.

- CSV is read with pyarrow's streaming reader, every column as raw bytes: the schema checks
  type the values later, and text that is not valid in the declared encoding rejects that
  row (naming the column) instead of failing the file. A line with the wrong number of
  fields (a truncated file, a stray separator) becomes a row of its own with the reason.
- Parquet is read row group by row group (``iter_batches``); values keep their stored type.
"""

from __future__ import annotations

import glob as globbing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from framework.errors import DataValidationError, FrameworkError, InputPathError

#: Columns every chunk carries besides the table's own: where each row came from and, for a
#: row that could not be read as a row of the table, why.
FILE, ROW, ERROR = "__file", "__row", "__error"
META = (FILE, ROW, ERROR)

CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass
class Chunk:
    """At most ``chunk_rows`` rows of one file, with their origin.

    ``frame`` holds the table's columns plus ``__file`` (the file, categorical), ``__row``
    (the 1-based data row in that file, header not counted) and, for CSV, ``__error`` (why a
    row could not be read, else None; Parquet rows are always readable). ``index`` counts
    chunks over the whole source, from 0.
    """

    frame: pd.DataFrame
    file: str
    index: int

    @property
    def rows(self) -> int:
        return len(self.frame)


def file_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    raise InputPathError(
        f"{path}: not a CSV or Parquet file (by its name)",
        hint=f"name it *{' or *'.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}",
    )


def resolve_paths(path: str, field: str, suffixes: tuple[str, ...] | None = None) -> list[Path]:
    """The files ``path`` names: one file, every table file in a folder, or a glob's matches.

    A path that names nothing, a folder with no table files and a glob that matches no file
    are errors naming ``field``; files come back sorted so that chunks come in a fixed order.
    """
    suffixes = suffixes or (CSV_SUFFIXES + PARQUET_SUFFIXES)
    given = Path(path).expanduser()
    if any(ch in path for ch in "*?["):
        found = sorted(Path(p) for p in globbing.glob(str(given), recursive=True))
        files = [p for p in found if p.is_file()]
        if not files:
            raise InputPathError(f"the glob {path!r} matches no file", path=field)
        return files
    if given.is_dir():
        files = sorted(
            p for p in given.rglob("*") if p.is_file() and p.name.lower().endswith(suffixes)
        )
        if not files:
            raise InputPathError(
                f"the folder {given} holds no {' or '.join(sorted(set(suffixes)))} files",
                path=field,
            )
        return files
    if not given.is_file():
        raise InputPathError(f"no such file or folder: {given}", path=field)
    return [given]


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write a whole file beside ``path`` and rename it into place: a run that fails midway
    never leaves a partial file under the final name."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    if isinstance(data, str):
        partial.write_text(data)
    else:
        partial.write_bytes(data)
    os.replace(partial, path)
    return path


def check_readable(files: list[Path], separator: str = ",", encoding: str = "utf-8") -> None:
    """Fail early, naming the file, on one that is empty or not a table at all (before a
    distributed read starts): a CSV's header line, a Parquet file's footer."""
    for path in files:
        if file_format(path) == "csv":
            _csv_header(path, separator, encoding)
            continue
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            rows = pq.ParquetFile(path).metadata.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise DataValidationError(f"{path}: not a readable Parquet file ({exc})") from None
        if rows == 0:
            raise DataValidationError(f"{path}: the file has no rows")


def framework_cause(exc: BaseException) -> FrameworkError | None:
    """The framework error behind an error raised in a Ray task (Ray wraps it), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, FrameworkError):
            return current
        cause = getattr(current, "cause", None)
        current = cause if isinstance(cause, BaseException) else current.__cause__
    return None


def iter_chunks(
    files: list[Path],
    chunk_rows: int,
    *,
    separator: str = ",",
    encoding: str = "utf-8",
    limit_rows: int | None = None,
    columns: list[str] | None = None,
) -> Iterator[Chunk]:
    """Chunks of at most ``chunk_rows`` rows over ``files`` in order (``limit_rows`` in all)."""
    index = 0
    left = limit_rows
    for path in files:
        if left is not None and left <= 0:
            return
        kind = file_format(path)
        reader = (
            _parquet_frames(path, chunk_rows, columns)
            if kind == "parquet"
            else _csv_frames(path, chunk_rows, separator, encoding, columns)
        )
        for frame in reader:
            if left is not None:
                frame = frame.head(left)
                left -= len(frame)
            if len(frame):
                if ERROR in frame.columns:
                    reason = frame[ERROR]
                    frame[ERROR] = reason.astype(object).where(reason.notna(), None)
                frame[FILE] = constant(str(path), len(frame))
                yield Chunk(frame, str(path), index)
                index += 1
            if left is not None and left <= 0:
                return


def constant(value: str, rows: int) -> pd.Categorical:
    """A column of one repeated text, stored once (no string per row)."""
    return pd.Categorical.from_codes(np.zeros(rows, dtype=np.int8), categories=[value])


def read_all(files: list[Path], **options: Any) -> pd.DataFrame:
    """Every chunk of ``files`` in one frame (for data that fits in memory)."""
    frames = [c.frame for c in iter_chunks(files, 1 << 20, **options)]
    if not frames:
        return pd.DataFrame(columns=list(META))
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------- Parquet


def _parquet_frames(
    path: Path, chunk_rows: int, columns: list[str] | None
) -> Iterator[pd.DataFrame]:
    for table in arrow_chunks(path, chunk_rows, columns):
        yield table.drop_columns([FILE]).to_pandas()  # iter_chunks sets the file column


def arrow_chunks(path: Path, chunk_rows: int, columns: list[str] | None) -> Iterator[Any]:
    """A Parquet file's chunks as Arrow tables with ``__file`` (dictionary) and ``__row``
    (what ``iter_chunks`` reads from Parquet, for readers that hand Arrow on: Ray Data)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataValidationError(f"{path}: not a readable Parquet file ({exc})") from None
    if handle.metadata.num_rows == 0:
        raise DataValidationError(f"{path}: the file has no rows")
    names = handle.schema_arrow.names
    wanted = [c for c in columns if c in names] if columns is not None else None
    name = pa.array([str(path)])
    row = 1
    try:
        for batch in handle.iter_batches(batch_size=chunk_rows, columns=wanted):
            n = batch.num_rows
            table = pa.Table.from_batches([batch])
            codes = pa.array(np.zeros(n, dtype=np.int32))
            table = table.append_column(FILE, pa.DictionaryArray.from_arrays(codes, name))
            table = table.append_column(ROW, pa.array(np.arange(row, row + n, dtype=np.int64)))
            row += n
            yield table
    except (pa.ArrowException, OSError) as exc:  # a truncated or corrupt row group
        raise DataValidationError(
            f"{path}: cannot read past data row {row - 1} ({exc})",
            hint="the file is truncated or corrupt; rows before it were read",
        ) from None


# -------------------------------------------------------------------------------------- CSV


def _csv_header(path: Path, separator: str, encoding: str) -> list[str]:
    import csv
    import gzip

    opener: Any = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as handle:
        raw = handle.readline()
    try:
        line = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DataValidationError(
            f"{path}: the header is not valid {encoding} ({exc.reason} at byte {exc.start})",
            path="data.source.encoding",
        ) from None
    first = next(csv.reader([line.lstrip("\ufeff")], delimiter=separator), None)
    if first is None or not any(x.strip() for x in first):
        raise DataValidationError(f"{path}: the file is empty (no header line)")
    return [x.strip() for x in first]


def _csv_frames(
    path: Path, chunk_rows: int, separator: str, encoding: str, columns: list[str] | None
) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    header = _csv_header(path, separator, encoding)
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates:
        raise DataValidationError(
            f"{path}: the header names a column twice: {', '.join(duplicates)}"
        )
    bad_lines: list[tuple[int | None, str]] = []

    def on_invalid(row: Any) -> str:
        number = getattr(row, "number", None)
        bad_lines.append(
            (
                number,
                f"line has {row.actual_columns} field(s), the header {row.expected_columns}",
            )
        )
        return "skip"

    utf8 = encoding.replace("-", "").lower() in ("utf8",)
    read = pcsv.ReadOptions(
        column_names=header,
        skip_rows=1,
        block_size=1 << 22,
        use_threads=False,
        encoding="utf8" if utf8 else encoding,
    )
    parse = pcsv.ParseOptions(delimiter=separator, invalid_row_handler=on_invalid)
    types = pa.binary() if utf8 else pa.string()
    convert = pcsv.ConvertOptions(
        column_types={c: types for c in header},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
        include_columns=[c for c in header if c in columns] if columns is not None else None,
    )
    try:
        reader = pcsv.open_csv(
            path, read_options=read, parse_options=parse, convert_options=convert
        )
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            raise DataValidationError(f"{path}: the file is empty") from None
        raise DataValidationError(f"{path}: not readable as CSV ({exc})") from None
    pending: list[pd.DataFrame] = []
    held = 0
    row = 1  # data rows read so far + 1, bad lines included
    try:
        for batch in reader:
            frame = _decoded(batch, encoding) if utf8 else batch.to_pandas()
            # Bad lines seen while this batch was parsed come before its rows end; they are
            # emitted as rows of their own (with the reason) so that nothing is lost silently.
            frame, row = _with_origin(frame, path, row, bad_lines)
            bad_lines.clear()
            pending.append(frame)
            held += len(frame)
            while held >= chunk_rows:
                joined = pd.concat(pending, ignore_index=True)
                yield joined.iloc[:chunk_rows].reset_index(drop=True)
                rest = joined.iloc[chunk_rows:].reset_index(drop=True)
                pending, held = ([rest], len(rest)) if len(rest) else ([], 0)
    except pa.ArrowInvalid as exc:
        raise DataValidationError(
            f"{path}: cannot read past data row {row - 1} ({exc})",
            hint="fix the file or data.source.separator/encoding; rows before it were read",
        ) from None
    if bad_lines:
        frame, row = _with_origin(pd.DataFrame(columns=header), path, row, bad_lines)
        pending.append(frame)
    if pending:
        joined = pd.concat(pending, ignore_index=True)
        if len(joined):
            yield joined


def _with_origin(
    frame: pd.DataFrame, path: Path, row: int, bad: list[tuple[int | None, str]]
) -> tuple[pd.DataFrame, int]:
    frame[FILE] = str(path)
    if ERROR not in frame.columns:
        frame[ERROR] = None
    if not bad:
        frame[ROW] = np.arange(row, row + len(frame), dtype=np.int64)
        return frame, row + len(frame)
    # pyarrow numbers lines from 1 with the header as line 1: data row = line - 1.
    rows = [n - 1 if n else None for n, _ in bad]
    filler = pd.DataFrame(
        {
            **{c: [""] * len(bad) for c in frame.columns if c not in META},
            FILE: str(path),
            ERROR: [reason for _, reason in bad],
        }
    )
    good_rows = np.arange(row, row + len(frame) + len(bad), dtype=np.int64)
    taken = {r for r in rows if r is not None}
    good = [r for r in good_rows if r not in taken][: len(frame)]
    frame[ROW] = np.asarray(good, dtype=np.int64)
    filler[ROW] = np.asarray([r if r is not None else -1 for r in rows], dtype=np.int64)
    merged = pd.concat([frame, filler], ignore_index=True).sort_values(ROW, kind="stable")
    return merged.reset_index(drop=True), row + len(frame) + len(bad)


def _decoded(batch: Any, encoding: str) -> pd.DataFrame:
    """A batch of raw-bytes columns as text; a value that is not valid UTF-8 marks its row."""
    import pyarrow as pa

    columns: dict[str, Any] = {}
    errors: np.ndarray | None = None
    for name, array in zip(batch.schema.names, batch.columns, strict=True):
        try:
            columns[name] = array.cast(pa.string()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:  # rare: decode value by value to find the rows
            raw = array.to_pylist()
            values = np.empty(len(raw), dtype=object)
            bad = np.zeros(len(raw), dtype=bool)
            for i, item in enumerate(raw):
                try:
                    values[i] = item.decode("utf-8")
                except UnicodeDecodeError:
                    values[i] = ""
                    bad[i] = True
            columns[name] = values
            if errors is None:
                errors = np.full(len(raw), None, dtype=object)
            for i in np.flatnonzero(bad):
                if errors[i] is None:
                    errors[i] = f"column {name!r}: not valid {encoding} text"
    frame = pd.DataFrame(columns)
    frame[ERROR] = errors if errors is not None else None
    return frame
