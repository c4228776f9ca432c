"""The binary tensor data extension of the Open Inference Protocol: raw little-endian values.

Numbers are packed as their datatype (``FP32``: 4 bytes each); ``BOOL`` as one byte; each
``BYTES`` element as a 4-byte little-endian length and its UTF-8 bytes, as Triton and
``tritonclient`` write them.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from framework.serving.problems import invalid

#: The v2 datatypes of numbers, with their little-endian numpy types.
NUMERIC_TYPES: dict[str, str] = {
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
}


def decode_tensor(
    chunk: bytes, datatype: str, count: int, loc: tuple[Any, ...]
) -> np.ndarray | list[Any]:
    """The values of one tensor sent as raw bytes."""
    if datatype == "BYTES":
        out: list[Any] = []
        at = 0
        while at < len(chunk) and len(out) < count:
            if at + 4 > len(chunk):
                break
            (size,) = struct.unpack_from("<I", chunk, at)
            piece = chunk[at + 4 : at + 4 + size]
            if len(piece) != size:
                break
            try:
                out.append(piece.decode("utf-8"))
            except UnicodeDecodeError:
                raise invalid(
                    (*loc, "data", len(out)), "BYTES element is not valid UTF-8", "type"
                ) from None
            at += 4 + size
        if len(out) != count or at != len(chunk):
            raise invalid(
                (*loc, "parameters", "binary_data_size"),
                f"the bytes do not hold {count} BYTES elements",
            )
        return out
    dtype = np.dtype("|b1" if datatype == "BOOL" else NUMERIC_TYPES[datatype])
    if len(chunk) != count * dtype.itemsize:
        raise invalid(
            (*loc, "parameters", "binary_data_size"),
            f"{len(chunk)} bytes do not hold {count} {datatype} values "
            f"({dtype.itemsize} bytes each)",
        )
    return np.frombuffer(chunk, dtype=dtype)


def encode_tensor(values: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for value in values.tolist():
            data = str(value).encode("utf-8")
            parts.append(struct.pack("<I", len(data)) + data)
        return b"".join(parts)
    return np.ascontiguousarray(values, dtype="<f4").tobytes()
