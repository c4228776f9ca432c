"""Pruning of fitted models: torch MLPs (magnitude, structured) and tree ensembles.

Each function returns a new fitted pipeline; the input pipeline is left as it was, so the
float parent can still be exported and measured beside the pruned variant.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from framework.config.optimize import PruningConfig
from framework.errors import ConfigError


def prune(
    pipeline: Any, config: PruningConfig, X_train: Any, y_train: Any, seed: int
) -> tuple[Any, dict[str, float]]:
    """A pruned copy of ``pipeline`` and what pruning did (sparsity, sizes, trees)."""
    estimator = pipeline.steps[-1][1]
    pruned = copy.deepcopy(pipeline)
    target = pruned.steps[-1][1]
    if config.method == "trees":
        if not hasattr(estimator, "estimators_"):
            raise ConfigError(
                [
                    "optimize.pruning.method: 'trees' needs a tree ensemble, not "
                    f"{type(estimator).__name__}"
                ]
            )
        return pruned, _prune_trees(target, config, pruned[:-1].transform(X_train), y_train)
    if not hasattr(estimator, "net_"):
        raise ConfigError(
            [
                f"optimize.pruning.method: {config.method!r} needs a torch model (torch_mlp), "
                f"not {type(estimator).__name__}"
            ]
        )
    Xt = np.asarray(pruned[:-1].transform(X_train), dtype=np.float32)
    targets = target._encode(y_train)
    if config.method == "magnitude":
        info = _magnitude(target, config, Xt, targets, seed)
    else:
        info = _structured(target, config, Xt, targets, seed)
    return pruned, info


# -- torch ----------------------------------------------------------------------------------
def _linears(net: Any) -> list[Any]:
    import torch

    return [m for m in net if isinstance(m, torch.nn.Linear)]


def _finetune(estimator: Any, X: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> None:
    """A few epochs of the model's own optimizer settings, in the driver (small data)."""
    import torch

    if epochs == 0:
        return
    settings = estimator.settings()
    net = estimator.net_
    torch.manual_seed(seed)
    classification = estimator._estimator_kind == "classification"
    inputs = torch.as_tensor(X)
    targets = torch.as_tensor(y, dtype=torch.long if classification else torch.float32)
    if not classification:
        targets = targets.reshape(-1, 1)
    loss_fn = torch.nn.CrossEntropyLoss() if classification else torch.nn.MSELoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.learning_rate)
    batch = settings.batch_size
    generator = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=generator)
        for i in range(0, len(inputs), batch):
            rows = order[i : i + batch]
            optimizer.zero_grad()
            loss_fn(net(inputs[rows]), targets[rows]).backward()
            optimizer.step()
    net.eval()


def _magnitude(
    estimator: Any, config: PruningConfig, X: np.ndarray, y: np.ndarray, seed: int
) -> dict[str, float]:
    """Global L1 (magnitude) pruning of every Linear weight, fine-tuned with the masks on."""
    import torch
    from torch.nn.utils import prune as torch_prune

    net = estimator.net_
    layers = _linears(net)
    torch_prune.global_unstructured(
        [(layer, "weight") for layer in layers],
        pruning_method=torch_prune.L1Unstructured,
        amount=config.sparsity,
    )
    _finetune(estimator, X, y, config.finetune_epochs, seed)
    for layer in layers:
        torch_prune.remove(layer, "weight")
    weights = torch.cat([layer.weight.detach().reshape(-1) for layer in layers])
    return {"sparsity": float((weights == 0).float().mean())}


def _structured(
    estimator: Any, config: PruningConfig, X: np.ndarray, y: np.ndarray, seed: int
) -> dict[str, float]:
    """Remove the weakest hidden neurons (L2 norm of their weights in and out) for good."""
    import torch

    old = estimator.net_
    modules = list(old)
    linear_at = [i for i, m in enumerate(modules) if isinstance(m, torch.nn.Linear)]
    kept: list[torch.Tensor] = []
    for position, index in enumerate(linear_at[:-1]):
        layer = modules[index]
        following = modules[linear_at[position + 1]]
        score = layer.weight.detach().norm(dim=1) + following.weight.detach().norm(dim=0)
        keep = max(1, round(layer.out_features * (1 - config.sparsity)))
        kept.append(torch.sort(torch.topk(score, keep).indices).values)
    new_modules = []
    previous = None
    hidden = 0
    for i, module in enumerate(modules):
        if isinstance(module, torch.nn.Linear):
            rows = kept[hidden] if hidden < len(kept) else torch.arange(module.out_features)
            cols = previous if previous is not None else torch.arange(module.in_features)
            layer = torch.nn.Linear(len(cols), len(rows))
            with torch.no_grad():
                layer.weight.copy_(module.weight[rows][:, cols])
                layer.bias.copy_(module.bias[rows])
            new_modules.append(layer)
            previous = rows
            hidden += 1
        elif isinstance(module, torch.nn.BatchNorm1d):
            norm = torch.nn.BatchNorm1d(len(previous))
            with torch.no_grad():
                norm.weight.copy_(module.weight[previous])
                norm.bias.copy_(module.bias[previous])
                norm.running_mean.copy_(module.running_mean[previous])
                norm.running_var.copy_(module.running_var[previous])
            new_modules.append(norm)
        else:
            new_modules.append(copy.deepcopy(module))
        del i
    estimator.net_ = torch.nn.Sequential(*new_modules).eval()
    _finetune(estimator, X, y, config.finetune_epochs, seed)
    before = [m.out_features for m in _linears(old)][:-1]
    after = [m.out_features for m in _linears(estimator.net_)][:-1]
    return {
        "hidden_before": float(sum(before)),
        "hidden_after": float(sum(after)),
        "params_before": float(sum(p.numel() for p in old.parameters())),
        "params_after": float(sum(p.numel() for p in estimator.net_.parameters())),
    }


# -- trees ----------------------------------------------------------------------------------
def _prune_trees(estimator: Any, config: PruningConfig, X: Any, y: Any) -> dict[str, float]:
    before = len(estimator.estimators_)
    if config.ccp_alpha > 0:
        estimator.set_params(ccp_alpha=config.ccp_alpha)
        estimator.fit(X, y)
    keep = max(1, round(len(estimator.estimators_) * config.keep_trees))
    estimator.estimators_ = estimator.estimators_[:keep]
    estimator.n_estimators = keep
    if hasattr(estimator, "n_estimators_"):
        estimator.n_estimators_ = keep
    if hasattr(estimator, "train_score_"):
        estimator.train_score_ = estimator.train_score_[:keep]
    nodes = _tree_nodes(estimator)
    return {"trees_before": float(before), "trees_after": float(keep), "nodes": float(nodes)}


def _tree_nodes(estimator: Any) -> int:
    trees = np.asarray(estimator.estimators_, dtype=object).reshape(-1)
    return int(sum(t.tree_.node_count for t in trees))
