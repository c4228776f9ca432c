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
    with _quiet():  # the quantizers log advice and every tensor they type on the root logger
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
    root.setLevel(max(level, logging.ERROR))
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
        source.write_bytes(_typed(model, calibration[0]))
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


def _typed(model: bytes, feeds: dict[str, np.ndarray]) -> bytes:
    """``model`` with the element type of every intermediate tensor recorded.

    Shape inference cannot see through ai.onnx.ml operators, and the static quantizer skips
    (or fails on) tensors it cannot type; one run with every tensor exposed tells their types.
    """
    import onnxruntime as ort
    from onnx import helper

    proto = onnx.load_from_string(model)
    known = {v.name for v in (*proto.graph.input, *proto.graph.output, *proto.graph.value_info)}
    names = [o for node in proto.graph.node for o in node.output if o and o not in known]
    if not names:
        return model
    probe = onnx.load_from_string(model)
    probe.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    for name, value in zip(names, session.run(names, feeds), strict=True):
        array = np.asarray(value)
        if array.dtype == object:
            elem = onnx.TensorProto.STRING
        else:
            elem = helper.np_dtype_to_tensor_dtype(array.dtype)
        proto.graph.value_info.append(helper.make_tensor_value_info(name, elem, None))
    return proto.SerializeToString()


def _float16(model: bytes) -> bytes:
    """Dense-layer weights stored as float16, cast back to float32 when the session loads.

    On CPU, ONNX Runtime has few float16 kernels, and the preprocessing (ai.onnx.ml) has
    none, so computing in float16 does not help here: the gain is the smaller file. ONNX
    Runtime folds the casts into float32 constants when it builds the session.
    """
    from onnx import helper, numpy_helper

    proto = onnx.load_from_string(model)
    graph = proto.graph
    consumers: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    kept, casts = [], []
    for init in graph.initializer:
        users = consumers.get(init.name, set())
        if init.data_type != onnx.TensorProto.FLOAT or not users or not users <= set(DENSE_OPS):
            kept.append(init)
            continue
        half = numpy_helper.from_array(
            numpy_helper.to_array(init).astype(np.float16), f"{init.name}_fp16"
        )
        kept.append(half)
        casts.append(
            helper.make_node(
                "Cast",
                [half.name],
                [init.name],
                to=onnx.TensorProto.FLOAT,
                name=f"{half.name}_cast",
            )
        )
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()
