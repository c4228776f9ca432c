"""The torch MLP estimator behind the ``torch_mlp`` plugins, and its skl2onnx converter.

Kept apart from the plugin registration (``torch_mlp.py``) so that loading the plugins does
not import scikit-learn and torch: the registry skips modules whose name starts with ``_``,
and the plugin imports this one when it builds an estimator.
"""

from __future__ import annotations

import functools
import io
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from framework.config.train import DistributedConfig
from plugins.models.torch_mlp import TorchMlpConfig


def build_mlp(
    inputs: int,
    hidden: list[int],
    outputs: int,
    activation: str,
    dropout: float,
    batch_norm: bool,
) -> Any:
    """The network: [Linear, (BatchNorm), activation, (Dropout)] per hidden layer, Linear."""
    import torch

    act = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "gelu": torch.nn.GELU}[activation]
    layers: list[Any] = []
    width = inputs
    for units in hidden:
        layers.append(torch.nn.Linear(width, units))
        if batch_norm:
            layers.append(torch.nn.BatchNorm1d(units))
        layers.append(act())
        if dropout > 0:
            layers.append(torch.nn.Dropout(dropout))
        width = units
    layers.append(torch.nn.Linear(width, outputs))
    return torch.nn.Sequential(*layers)


class TorchMLP(BaseEstimator):
    """A torch MLP behind the scikit-learn estimator contract; fits on Ray Train."""

    _estimator_kind = "classification"

    def __init__(
        self,
        params: dict[str, Any] | None = None,
        seed: int = 0,
        distributed: DistributedConfig | None = None,
        run_prefix: str = "torch_mlp",
    ):
        self.params = params
        self.seed = seed
        self.distributed = distributed
        self.run_prefix = run_prefix

    # -- fitting -----------------------------------------------------------------------
    def settings(self) -> TorchMlpConfig:
        """The hyperparameters, with the config's defaults for any not given."""
        return TorchMlpConfig.model_validate({**(self.params or {}), "type": "torch_mlp"})

    def _spec(self, inputs: int, outputs: int) -> Any:
        from framework.training.torch_train import NetSpec

        c = self.settings()
        build = functools.partial(
            build_mlp, inputs, list(c.hidden_sizes), outputs, c.activation, c.dropout, c.batch_norm
        )
        return NetSpec(
            build=build,
            task=self._estimator_kind,
            optimizer=c.optimizer,
            learning_rate=c.learning_rate,
            weight_decay=c.weight_decay,
            batch_size=c.batch_size,
            epochs=c.epochs,
            patience=c.patience,
            seed=self.seed,
        )

    def _targets(self, y: Any) -> tuple[np.ndarray, int]:
        if self._estimator_kind == "classification":
            self.classes_, codes = np.unique(np.asarray(y).astype(str), return_inverse=True)
            return codes.astype(np.int64), len(self.classes_)
        return np.asarray(y, dtype=np.float32), 1

    def fit(self, X: Any, y: Any, sample_weight: Any | None = None) -> TorchMLP:
        from framework.training.torch_train import fit_torch, run_name

        X = np.asarray(X, dtype=np.float32)
        targets, outputs = self._targets(y)
        X_val = y_val = None
        validation = getattr(self, "validation_data", None)
        if validation is not None:
            X_val = np.asarray(validation[0], dtype=np.float32)
            y_val = self._encode(validation[1])
        spec = self._spec(X.shape[1], outputs)
        name = run_name(spec, X, targets, self.run_prefix)
        result = fit_torch(
            spec, X, targets, X_val, y_val, self.distributed or DistributedConfig(), name
        )
        self.n_features_in_ = X.shape[1]
        self.net_ = spec.build()
        self.net_.load_state_dict(result.state_dict)
        self.net_.eval()
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.resumed_from_ = result.resumed_from
        self.run_path_ = result.run_path
        return self

    def _encode(self, y: Any) -> np.ndarray:
        if self._estimator_kind == "classification":
            lookup = {c: i for i, c in enumerate(self.classes_)}
            return np.array([lookup[str(v)] for v in np.asarray(y)], dtype=np.int64)
        return np.asarray(y, dtype=np.float32)

    @staticmethod
    def register_onnx_converter() -> None:
        """Called by the ONNX export before it converts a pipeline ending in this model."""
        _register_converter()

    # -- prediction --------------------------------------------------------------------
    def _forward(self, X: Any) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = self.net_(torch.as_tensor(np.asarray(X, dtype=np.float32)))
        return out.numpy()

    def onnx_graph(self, opset: int) -> Any:
        """The network alone as ONNX: input ``x`` [N, d], output probabilities or values."""
        import onnx
        import torch

        wrapper = self.net_
        if self._estimator_kind == "classification":
            wrapper = torch.nn.Sequential(self.net_, torch.nn.Softmax(dim=1))
        wrapper.eval()
        buffer = io.BytesIO()
        torch.onnx.export(
            wrapper,
            (torch.zeros(1, self.n_features_in_),),
            buffer,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "rows"}, "y": {0: "rows"}},
            opset_version=opset,
            dynamo=False,
        )
        return onnx.load_from_string(buffer.getvalue())


class TorchMLPClassifier(ClassifierMixin, TorchMLP):
    _estimator_kind = "classification"

    def predict_proba(self, X: Any) -> np.ndarray:
        logits = self._forward(X)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self._forward(X).argmax(axis=1)]


class TorchMLPRegressor(RegressorMixin, TorchMLP):
    _estimator_kind = "regression"

    def predict(self, X: Any) -> np.ndarray:
        return self._forward(X).reshape(-1)


# -- ONNX: splice the network's graph into the pipeline's -----------------------------------
def _parser(scope: Any, model: Any, inputs: Any, custom_parsers: Any = None) -> Any:
    from skl2onnx._supported_operators import get_model_alias
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    operator = scope.declare_local_operator(get_model_alias(type(model)), model)
    operator.inputs = inputs
    if model._estimator_kind == "classification":
        label = scope.declare_local_variable("label", StringTensorType())
        probabilities = scope.declare_local_variable("probabilities", FloatTensorType())
        operator.outputs.append(label)
        operator.outputs.append(probabilities)
    else:
        operator.outputs.append(scope.declare_local_variable("variable", FloatTensorType()))
    return operator.outputs


def _shape(operator: Any) -> None:
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    rows = operator.inputs[0].get_first_dimension()
    model = operator.raw_operator
    if model._estimator_kind == "classification":
        operator.outputs[0].type = StringTensorType([rows])
        operator.outputs[1].type = FloatTensorType([rows, len(model.classes_)])
    else:
        operator.outputs[0].type = FloatTensorType([rows, 1])


def _convert(scope: Any, operator: Any, container: Any) -> None:
    from onnx import TensorProto, helper, numpy_helper

    from framework.export.onnx import OPSET

    model = operator.raw_operator
    graph = model.onnx_graph(OPSET[""]).graph
    names = {graph.input[0].name: operator.inputs[0].full_name}
    classification = model._estimator_kind == "classification"
    output = graph.output[0].name
    if classification:
        names[output] = operator.outputs[1].full_name
    else:
        names[output] = operator.outputs[0].full_name

    def rename(name: str) -> str:
        if not name:
            return name
        if name not in names:
            names[name] = scope.get_unique_variable_name(f"mlp_{name}")
        return names[name]

    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if _plain_linear(node, attrs, weights):
            # Linear layers as MatMul + Add rather than Gemm: ONNX Runtime's int8 quantizers
            # fuse MatMul into fast integer kernels, and Gemm into slower ones.
            source, weight, bias = node.input
            transposed = f"{weight}_t"
            weights[transposed] = np.ascontiguousarray(weights.pop(weight).T)
            product = rename(f"{node.output[0]}_matmul")
            container.add_node(
                "MatMul",
                [rename(source), rename(transposed)],
                [product],
                name=scope.get_unique_operator_name("mlp_MatMul"),
            )
            container.add_node(
                "Add",
                [product, rename(bias)],
                [rename(node.output[0])],
                name=scope.get_unique_operator_name("mlp_Add"),
            )
            continue
        container.add_node(
            node.op_type,
            [rename(i) for i in node.input],
            [rename(o) for o in node.output],
            name=scope.get_unique_operator_name(f"mlp_{node.op_type}"),
            op_domain=node.domain or "",
            op_version=OPSET[""],
            **attrs,
        )
    for name, array in weights.items():
        container.add_initializer(
            rename(name),
            helper.np_dtype_to_tensor_dtype(array.dtype),
            list(array.shape),
            array.ravel().tolist(),
        )
    if classification:
        classes = scope.get_unique_variable_name("mlp_classes")
        container.add_initializer(
            classes,
            TensorProto.STRING,
            [len(model.classes_)],
            [str(c).encode() for c in model.classes_],
        )
        best = scope.get_unique_variable_name("mlp_argmax")
        container.add_node(
            "ArgMax",
            [operator.outputs[1].full_name],
            [best],
            name=scope.get_unique_operator_name("mlp_ArgMax"),
            axis=1,
            keepdims=0,
        )
        container.add_node(
            "Gather",
            [classes, best],
            [operator.outputs[0].full_name],
            name=scope.get_unique_operator_name("mlp_Gather"),
            axis=0,
        )


def _plain_linear(node: Any, attrs: dict[str, Any], weights: dict[str, np.ndarray]) -> bool:
    """A Gemm that is y = x W^T + b with W and b constants (what nn.Linear exports)."""
    return (
        node.op_type == "Gemm"
        and len(node.input) == 3
        and node.input[1] in weights
        and node.input[2] in weights
        and attrs.get("transA", 0) == 0
        and attrs.get("transB", 0) == 1
        and attrs.get("alpha", 1.0) == 1.0
        and attrs.get("beta", 1.0) == 1.0
    )


def _register_converter() -> None:
    from skl2onnx import update_registered_converter

    # The export asks classifiers for zipmap=False; this converter never adds a ZipMap.
    update_registered_converter(
        TorchMLPClassifier,
        "FrameworkTorchMLPClassifier",
        _shape,
        _convert,
        parser=_parser,
        options={"zipmap": [False, True]},
    )
    update_registered_converter(
        TorchMLPRegressor, "FrameworkTorchMLPRegressor", _shape, _convert, parser=_parser
    )
