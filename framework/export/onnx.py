"""Export a fitted pipeline (cleaning, encoding, scaling and model) as one ONNX graph.

The graph takes two inputs, ``numeric`` (float32, one column per numeric feature) and
``categorical`` (string, one column per categorical feature), so a caller feeds two arrays
however many features there are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from skl2onnx.common.data_types import DoubleTensorType

from framework.export.signature import CATEGORICAL_INPUT, NUMERIC_INPUT, Signature
from framework.training.clipping import OutlierClipper

__all__ = ["CATEGORICAL_INPUT", "NUMERIC_INPUT", "OPSET", "ExportedModel", "Signature"]

OPSET = {"": 17, "ai.onnx.ml": 3}


@dataclass
class ExportedModel:
    """ONNX bytes of a whole fitted pipeline and its signature."""

    onnx_bytes: bytes
    signature: Signature

    @property
    def size_bytes(self) -> int:
        return len(self.onnx_bytes)


def _clipper_shape(operator: Any) -> None:
    source = operator.inputs[0].type
    operator.outputs[0].type = source.__class__(source.shape)


def _clipper_convert(scope: Any, operator: Any, container: Any) -> None:
    clipper: OutlierClipper = operator.raw_operator
    double = isinstance(operator.inputs[0].type, DoubleTensorType)
    dtype, proto = (np.float64, TensorProto.DOUBLE) if double else (np.float32, TensorProto.FLOAT)
    names = []
    for label, bound in (("lower", clipper.lower_), ("upper", clipper.upper_)):
        name = scope.get_unique_variable_name(f"clip_{label}")
        values = np.asarray(bound, dtype=dtype)
        container.add_initializer(name, proto, list(values.shape), values.tolist())
        names.append(name)
    floor = scope.get_unique_variable_name("clipped_low")
    container.add_node(
        "Max",
        [operator.inputs[0].full_name, names[0]],
        floor,
        name=scope.get_unique_operator_name("ClipLow"),
    )
    container.add_node(
        "Min",
        [floor, names[1]],
        operator.outputs[0].full_name,
        name=scope.get_unique_operator_name("ClipHigh"),
    )


_registered = False


def register_converters() -> None:
    """Teach skl2onnx the framework's own pipeline steps (once)."""
    global _registered
    if _registered:
        return
    from skl2onnx import update_registered_converter

    update_registered_converter(
        OutlierClipper, "FrameworkOutlierClipper", _clipper_shape, _clipper_convert
    )
    _registered = True


def export_pipeline(
    pipeline: Any, numeric: list[str], categorical: list[str], task: str
) -> ExportedModel:
    """Convert a fitted pipeline to ONNX with two grouped inputs; check the graph."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    register_converters()
    estimator = pipeline.steps[-1][1]
    hook = getattr(type(estimator), "register_onnx_converter", None)
    if hook is not None:  # a plugin's own estimator brings its own converter
        hook()
    initial_types: list[tuple[str, Any]] = [(c, FloatTensorType([None, 1])) for c in numeric]
    initial_types += [(c, StringTensorType([None, 1])) for c in categorical]
    options = {id(estimator): {"zipmap": False}} if task == "classification" else None
    model = convert_sklearn(
        pipeline, initial_types=initial_types, options=options, target_opset=OPSET
    )
    _group_inputs(model, numeric, categorical)
    onnx.checker.check_model(model)
    outputs = [o.name for o in model.graph.output]
    classes = [str(c) for c in getattr(estimator, "classes_", [])]
    signature = Signature(task, list(numeric), list(categorical), outputs, classes)
    return ExportedModel(model.SerializeToString(), signature)


def _group_inputs(model: onnx.ModelProto, numeric: list[str], categorical: list[str]) -> None:
    """Replace one input per column by one input per kind, split inside the graph."""
    graph = model.graph
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    new_inputs = []
    new_nodes = []
    for group, columns, elem in (
        (NUMERIC_INPUT, numeric, TensorProto.FLOAT),
        (CATEGORICAL_INPUT, categorical, TensorProto.STRING),
    ):
        if not columns:
            continue
        new_inputs.append(helper.make_tensor_value_info(group, elem, [None, len(columns)]))
        if len(columns) == 1:
            new_nodes.append(helper.make_node("Identity", [group], columns, name=f"{group}_id"))
            continue
        name = f"{group}_split"
        if opset < 13:  # skl2onnx lowers the opset to what the graph needs; Split changed at 13
            node = helper.make_node(
                "Split", [group], columns, axis=1, split=[1] * len(columns), name=name
            )
        else:
            sizes = f"{group}_split_sizes"
            graph.initializer.append(
                numpy_helper.from_array(np.ones(len(columns), dtype=np.int64), sizes)
            )
            node = helper.make_node("Split", [group, sizes], columns, axis=1, name=name)
        new_nodes.append(node)
    nodes = _bypass_split_concat(new_nodes + list(graph.node))
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.input[:]
    graph.input.extend(new_inputs)
    used = {name for node in nodes for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _bypass_split_concat(nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """Where a Concat re-joins exactly the columns a Split just cut, feed the input through."""
    splits = {tuple(n.output): n.input[0] for n in nodes if n.op_type == "Split"}
    out = []
    for node in nodes:
        axis = next((a.i for a in node.attribute if a.name == "axis"), None)
        source = splits.get(tuple(node.input)) if node.op_type == "Concat" and axis == 1 else None
        if source is not None:
            node = helper.make_node("Identity", [source], list(node.output), name=node.name)
        out.append(node)
    used = {name for node in out for name in node.input}
    return [n for n in out if n.op_type != "Split" or any(o in used for o in n.output)]
