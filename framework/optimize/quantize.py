"""Quantization of an exported pipeline graph with ONNX Runtime's own quantizers."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx

from framework.config.optimize import QuantizationConfig

#: Only the dense layers are quantized: preprocessing (ai.onnx.ml) stays float.
DENSE_OPS = ["MatMul", "Gemm"]
#: Shape inference cannot type tensors that come out of ai.onnx.ml operators; they are float.
EXTRA = {"DefaultTensorType": onnx.TensorProto.FLOAT}


def quantize(
    model: bytes, config: QuantizationConfig, calibration: list[dict[str, np.ndarray]]
) -> bytes:
    """``model`` quantized as ``config`` says; ``calibration`` feeds are for static int8."""
    with _quiet():  # the quantizers log every tensor they type at INFO on the root logger
        if config.method == "dynamic_int8":
            return _dynamic(model, config)
        if config.method == "static_int8":
            return _static(model, config, calibration)
        if config.method == "float16":
            return _float16(model)
    return model


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def _dynamic(model: bytes, config: QuantizationConfig) -> bytes:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "in.onnx", Path(folder) / "out.onnx"
        source.write_bytes(model)
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            per_channel=config.per_channel,
            op_types_to_quantize=DENSE_OPS,
            extra_options=EXTRA,
        )
        return target.read_bytes()


class _Feeds:
    """ONNX Runtime's CalibrationDataReader over a list of feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._iter: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)


def _static(
    model: bytes, config: QuantizationConfig, calibration: list[dict[str, np.ndarray]]
) -> bytes:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(_Feeds, CalibrationDataReader):
        pass

    if not calibration:
        raise ValueError("static_int8 needs calibration rows")
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "in.onnx", Path(folder) / "out.onnx"
        source.write_bytes(model)
        quantize_static(
            source,
            target,
            Reader(calibration),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=config.per_channel,
            op_types_to_quantize=DENSE_OPS,
            extra_options=EXTRA,
        )
        return target.read_bytes()


def _float16(model: bytes) -> bytes:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = onnx.load_from_string(model)
    # ai.onnx.ml operators (imputer, scaler, encoders, trees) have no float16 kernels.
    blocked = [n.name for n in proto.graph.node if n.domain not in ("", "ai.onnx")]
    blocked_ops = sorted({n.op_type for n in proto.graph.node if n.domain not in ("", "ai.onnx")})
    converted = convert_float_to_float16(
        proto, keep_io_types=True, node_block_list=blocked, op_block_list=blocked_ops
    )
    return converted.SerializeToString()
