"""Open Inference Protocol (KServe v2) tensors, in JSON and with the binary data extension.

A request names either the model's own inputs (``numeric`` [N, k], ``categorical`` [N, m])
or one tensor per feature column. Each tensor's ``datatype`` must fit the columns it carries,
its ``data`` must match its ``shape`` (flat, or nested row by row), and every value is judged
by the same ``RequestRules`` as a v1 record. With the binary data extension
(``Inference-Header-Content-Length``), a tensor's values follow the JSON header as raw
little-endian bytes (``parameters.binary_data_size``), as ``tritonclient`` sends them by
default; outputs are returned that way when asked for (``binary_data_output`` or an output's
``binary_data``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from framework.export.signature import CATEGORICAL_INPUT, NUMERIC_INPUT, Signature
from framework.serving.binary import NUMERIC_TYPES, decode_tensor, encode_tensor
from framework.serving.codec import Answer, parse_json
from framework.serving.problems import HttpError, Problem, RequestInvalid, invalid
from framework.serving.rules import SMALL_BATCH, Feeds, RequestRules

DATATYPES = frozenset([*NUMERIC_TYPES, "BOOL", "BYTES"])
EXTENSIONS = ["binary_tensor_data"]
HEADER_LENGTH = b"inference-header-content-length"
_TENSOR_KEYS = frozenset({"name", "datatype", "shape", "data", "parameters"})
_REQUEST_KEYS = frozenset({"id", "inputs", "outputs", "parameters"})


@dataclass(frozen=True)
class InferRequest:
    """A decoded inference request: feeds, rows, its id and which outputs, how encoded."""

    feeds: Feeds
    rows: int
    request_id: str | None
    outputs: dict[str, bool]  # output name -> binary


def _accepts(rules: RequestRules, columns: list[str], datatype: str) -> bool:
    kinds = rules.kinds(columns)
    if kinds <= {"category", "string"}:
        return datatype == "BYTES"
    if datatype == "BOOL":
        return kinds == {"bool"}
    return datatype in NUMERIC_TYPES


def _shape(tensor: dict[str, Any], loc: tuple[Any, ...], width: int, max_rows: int) -> int:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape):
        raise invalid((*loc, "shape"), "expected a list of sizes", "type")
    if not shape or len(shape) > 2 or (len(shape) == 2 and shape[1] != width):
        raise invalid(
            (*loc, "shape"), f"expected [rows, {width}]" + (" or [rows]" if width == 1 else "")
        )
    if width != 1 and len(shape) == 1:
        raise invalid((*loc, "shape"), f"expected [rows, {width}]")
    if not 1 <= shape[0] <= max_rows:
        raise invalid((*loc, "shape"), f"rows must be 1..{max_rows}; got {shape[0]}")
    return int(shape[0])


def _flat(data: Any, rows: int, width: int, loc: tuple[Any, ...]) -> list[Any]:
    """The values of a JSON tensor, row-major: flat, or nested as [rows][width]."""
    if not isinstance(data, list):
        raise invalid((*loc, "data"), "expected a list", "type")
    if data and all(type(row) is list for row in data) and (width > 1 or len(data) == rows):
        if len(data) != rows or any(len(row) != width for row in data):
            raise invalid((*loc, "data"), f"nested data must be {rows} rows of {width} values")
        return [v for row in data for v in row]
    if len(data) != rows * width:
        raise invalid((*loc, "data"), f"has {len(data)} values; the shape says {rows * width}")
    return data


def _typed(values: list[Any], datatype: str, loc: tuple[Any, ...]) -> None:
    """Every JSON value is of the tensor's datatype (null: missing)."""
    if datatype == "BYTES":
        ok = all(v is None or type(v) is str for v in values)
        want = "strings"
    elif datatype == "BOOL":
        ok = all(v is None or type(v) is bool for v in values)
        want = "booleans"
    elif datatype.startswith(("INT", "UINT")):
        ok = all(v is None or type(v) is int for v in values)
        want = "integers"
    else:
        ok = all(v is None or type(v) in (int, float) for v in values)
        want = "numbers"
    if not ok:
        bad = next(i for i, v in enumerate(values) if not _is(v, datatype))
        raise invalid(
            (*loc, "data", bad),
            f"{datatype} tensors hold {want}; got {type(values[bad]).__name__}",
            "type",
        )


def _is(value: Any, datatype: str) -> bool:
    if value is None:
        return True
    if datatype == "BYTES":
        return type(value) is str
    if datatype == "BOOL":
        return type(value) is bool
    if datatype.startswith(("INT", "UINT")):
        return type(value) is int
    return type(value) in (int, float)


def decode_infer(
    rules: RequestRules, raw: bytes, header_length: str | None, max_rows: int
) -> InferRequest:
    """Decode and check a v2 inference request; RequestInvalid names every bad field."""
    tail = b""
    if header_length is not None:
        if not header_length.isdigit() or not 0 < int(header_length) <= len(raw):
            raise HttpError(
                400,
                f"Inference-Header-Content-Length {header_length[:20]!r} does not fit a body "
                f"of {len(raw)} bytes",
            )
        raw, tail = raw[: int(header_length)], raw[int(header_length) :]
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise invalid(("body",), "expected an inference request object", "type")
    problems = [
        Problem(("body", k), "Extra inputs are not permitted", "extra_forbidden")
        for k in body
        if k not in _REQUEST_KEYS
    ]
    rid = body.get("id")
    if rid is not None and (type(rid) is not str or len(rid) > 128):
        problems.append(
            Problem(("body", "id"), "expected a string of at most 128 characters", "string_type")
        )
    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict):
        problems.append(Problem(("body", "parameters"), "expected an object", "type"))
        parameters = {}
    if problems:
        raise RequestInvalid(problems)
    outputs = _outputs(
        body.get("outputs"), rules.signature, parameters.get("binary_data_output") is True
    )
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise invalid(("body", "inputs"), "expected a non-empty list of tensors", "type")
    feeds, rows = _inputs(
        rules, inputs, tail, max_rows, fast=b"true" not in raw and b"false" not in raw
    )
    return InferRequest(feeds, rows, rid, outputs)


def _inputs(
    rules: RequestRules, inputs: list[Any], tail: bytes, max_rows: int, fast: bool
) -> tuple[Feeds, int]:
    grouped, single = rules.layouts
    names: list[str] = []
    for i, tensor in enumerate(inputs):
        loc = ("body", "inputs", i)
        if not isinstance(tensor, dict) or type(tensor.get("name")) is not str:
            raise invalid(loc, "expected a tensor object with a name", "type")
        extra = [k for k in tensor if k not in _TENSOR_KEYS]
        if extra:
            raise invalid((*loc, extra[0]), "Extra inputs are not permitted", "extra_forbidden")
        names.append(tensor["name"])
    if len(set(names)) != len(names):
        raise invalid(("body", "inputs"), "an input is named twice")
    use_groups = bool(set(names) & set(grouped))
    known = grouped if use_groups else single
    for i, name in enumerate(names):
        if name not in known:
            options = (
                sorted(grouped) if use_groups else f"{sorted(grouped)} or one tensor per feature"
            )
            raise invalid(
                ("body", "inputs", i, "name"),
                f"unknown input {name!r}; this model takes {options}",
                "extra_forbidden",
            )
    required = set(grouped) if use_groups else set(rules.required)
    problems = [
        Problem(("body", "inputs", m), f"input {m!r} is missing", "missing")
        for m in sorted(required - set(names))
    ]
    columns: dict[str, Any] = {}
    block: np.ndarray | None = None
    offsets: dict[str, tuple[int, int, int]] = {}
    numeric_tensor: set[str] = set()
    rows: int | None = None
    at = 0
    for i, (name, tensor) in enumerate(zip(names, inputs, strict=True)):
        try:
            values, n, numeric, at = _tensor(
                rules, i, tensor, known[name], rows, tail, at, max_rows, fast
            )
        except RequestInvalid as exc:  # every tensor's problems at once
            problems += exc.problems
            continue
        rows = n
        if numeric:
            numeric_tensor.update(known[name])
        if name == NUMERIC_INPUT:
            block = rules.matrix(values, n, fast or isinstance(values, np.ndarray))
            if block is not None:  # accepted whole: no column needs looking at
                continue
        width = len(known[name])
        for j, column in enumerate(known[name]):
            columns[column] = values[j::width] if width > 1 else values
            offsets[column] = (i, j, width)
    if problems:
        raise RequestInvalid(problems)
    if at != len(tail):
        raise HttpError(400, f"{len(tail) - at} bytes of binary data follow the header unclaimed")
    assert rows is not None

    def where(column: str, row: int) -> tuple[str | int, ...]:
        i, j, width = offsets[column]
        return ("body", "inputs", i, "data", row * width + j)

    return rules.columns(columns, rows, where, numeric_tensor, fast, block), rows


def _tensor(
    rules: RequestRules,
    i: int,
    tensor: dict[str, Any],
    cols: list[str],
    rows: int | None,
    tail: bytes,
    at: int,
    max_rows: int,
    fast: bool,
) -> tuple[Any, int, bool, int]:
    """One tensor's values, its rows, whether it is numeric, and where its bytes end.

    With ``fast`` (no JSON booleans in the body), numeric JSON data that numpy reads as
    numbers of the datatype's kind is handed on as one array, typed at once."""
    loc = ("body", "inputs", i)
    width = len(cols)
    name = tensor["name"]
    datatype = tensor.get("datatype")
    if datatype not in DATATYPES:
        raise invalid((*loc, "datatype"), f"expected one of {sorted(DATATYPES)}", "enum")
    if not _accepts(rules, cols, datatype):
        raise invalid((*loc, "datatype"), f"{datatype} does not fit {name!r}", "value_error")
    n = _shape(tensor, loc, width, max_rows)
    if rows is not None and n != rows:
        raise invalid((*loc, "shape"), f"has {n} rows but another input has {rows}")
    rows = n
    params = tensor.get("parameters", {})
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if type(size) is not int or size < 0 or at + size > len(tail) or "data" in tensor:
            raise invalid(
                (*loc, "parameters", "binary_data_size"),
                "does not fit the binary data after the header",
            )
        values: Any = decode_tensor(tail[at : at + size], datatype, n * width, loc)
        at += size
    else:
        values = _flat(tensor.get("data"), n, width, loc)
        kinds = "fiu" if datatype.startswith("FP") else "iu" if datatype in NUMERIC_TYPES else ""
        array = _numbers(values) if fast and kinds and n > SMALL_BATCH else None
        if array is not None and array.dtype.kind in kinds:
            values = array
        else:
            _typed(values, datatype, loc)
    return values, n, datatype != "BYTES", at


def _numbers(values: list[Any]) -> np.ndarray | None:
    try:
        return np.asarray(values)
    except (ValueError, OverflowError):
        return None


def _outputs(wanted: Any, signature: Signature, binary_default: bool) -> dict[str, bool]:
    names = output_names(signature)
    if wanted is None:
        return dict.fromkeys(names, binary_default)
    if not isinstance(wanted, list) or not wanted:
        raise invalid(("body", "outputs"), "expected a non-empty list of {name}", "type")
    out: dict[str, bool] = {}
    for i, item in enumerate(wanted):
        loc = ("body", "outputs", i)
        if (
            not isinstance(item, dict)
            or type(item.get("name")) is not str
            or set(item) - {"name", "parameters"}
        ):
            raise invalid(loc, "expected {name, parameters?}", "type")
        if item["name"] not in names:
            raise invalid(
                (*loc, "name"), f"unknown output {item['name']!r}; this model has {names}", "enum"
            )
        params = item.get("parameters", {})
        if (
            not isinstance(params, dict)
            or set(params) - {"binary_data"}
            or not isinstance(params.get("binary_data", False), bool)
        ):
            raise invalid(
                (*loc, "parameters"), "only binary_data (a boolean) is supported", "value_error"
            )
        out[item["name"]] = params.get("binary_data", binary_default)
    return out


def output_names(signature: Signature) -> list[str]:
    return ["label", "probabilities"] if signature.classification else ["label"]


def encode_infer(
    model: str, answer: Answer, request: InferRequest, signature: Signature
) -> tuple[bytes, dict[str, str]]:
    """The v2 response body and its headers (binary outputs after the JSON header)."""
    n = len(answer.labels)
    tensors: dict[str, tuple[str, list[int], Any]] = {}
    if signature.classification:
        assert answer.scores is not None
        tensors["label"] = ("BYTES", [n], answer.labels)
        tensors["probabilities"] = (
            "FP32",
            [n, len(signature.classes)],
            answer.scores.astype(np.float32),
        )
    else:
        tensors["label"] = ("FP32", [n], answer.labels.astype(np.float32))
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, binary in request.outputs.items():
        datatype, shape, values = tensors[name]
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if binary:
            chunk = encode_tensor(values, datatype)
            tensor["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            tensor["data"] = (
                values.reshape(-1).tolist()
                if datatype != "BYTES"
                else [str(v) for v in values.tolist()]
            )
        outputs.append(tensor)
    header = orjson.dumps(
        {
            "model_name": model,
            "model_version": str(answer.version),
            "id": request.request_id or answer.request_id,
            "outputs": outputs,
        }
    )
    if not chunks:
        return header, {}
    return header + b"".join(chunks), {"Inference-Header-Content-Length": str(len(header))}


def model_metadata(name: str, versions: list[int], rules: RequestRules) -> dict[str, Any]:
    """``GET /v2/models/{name}``: the inputs a client builds, the outputs it gets."""
    signature = rules.signature
    inputs = []
    if rules.numeric:
        inputs.append(
            {"name": NUMERIC_INPUT, "datatype": "FP32", "shape": [-1, len(rules.numeric)]}
        )
    if rules.categorical:
        inputs.append(
            {"name": CATEGORICAL_INPUT, "datatype": "BYTES", "shape": [-1, len(rules.categorical)]}
        )
    outputs = [
        {
            "name": "label",
            "datatype": "BYTES" if signature.classification else "FP32",
            "shape": [-1],
        }
    ]
    if signature.classification:
        outputs.append(
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(signature.classes)]}
        )
    return {
        "name": name,
        "versions": [str(v) for v in versions],
        "platform": "onnxruntime_onnx",
        "inputs": inputs,
        "outputs": outputs,
        "parameters": {
            "feature_columns": {
                "numeric": [r.name for r in rules.numeric],
                "categorical": [r.name for r in rules.categorical],
            },
            "classes": list(signature.classes),
            "task": signature.task,
            "missing_values": "null, or NaN in FP tensors, for a nullable feature",
            "per_column_inputs": "inputs may also be one tensor per feature, named after it",
        },
    }
