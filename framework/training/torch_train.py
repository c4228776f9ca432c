"""Torch networks trained on Ray Train (``TorchTrainer``), data-parallel, with checkpoints.

A model plugin supplies a picklable ``NetSpec`` (how to build the network, the loss and the
optimizer); this module runs the training loop on ``train.distributed.workers`` workers.
Every epoch, rank 0 writes a checkpoint (weights, optimizer, early-stopping state) through
Ray Train. A run is named after its data and config, so running the same config again after
an interruption resumes from the last checkpoint instead of starting over.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from framework.config.train import DistributedConfig

STATE_FILE = "state.pt"


@dataclass
class NetSpec:
    """What a worker needs to build and train the network (all picklable)."""

    build: Callable[[], Any]  # () -> torch.nn.Module
    task: str  # classification | regression
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    epochs: int = 20
    patience: int | None = 5
    seed: int = 0
    #: Fault injection for recovery tests: raise after this epoch unless resuming.
    fail_after_epoch: int | None = None


@dataclass
class TorchResult:
    """The trained weights (best validation epoch) and the per-epoch history."""

    state_dict: dict[str, Any]
    history: list[dict[str, float]]
    best_epoch: int
    resumed_from: int | None
    run_path: str


def run_name(spec: NetSpec, X: np.ndarray, y: np.ndarray, prefix: str) -> str:
    """A stable name for this data and config: the same run resumes, a new one starts."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(X).tobytes())
    digest.update(np.ascontiguousarray(y).tobytes())
    settings = {k: v for k, v in spec.__dict__.items() if k not in ("build", "fail_after_epoch")}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(repr(spec.build).encode())
    return f"{prefix}-{digest.hexdigest()[:12]}"


def _device(choice: str) -> bool:
    """Whether workers use a GPU."""
    if choice == "cpu":
        return False
    if choice == "cuda":
        return True
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


def fit_torch(
    spec: NetSpec,
    X: np.ndarray,
    y: np.ndarray,
    X_val: np.ndarray | None,
    y_val: np.ndarray | None,
    config: DistributedConfig,
    name: str,
) -> TorchResult:
    """Train ``spec`` on Ray Train; return the best weights (by validation loss)."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    storage = Path(config.storage_path).expanduser().resolve()
    run_path = storage / name
    if not config.resume and run_path.exists():
        shutil.rmtree(run_path)
    resumed = _last_epoch(run_path)
    use_gpu = _device(config.device)
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={
            "spec": spec,
            "X": ray.put(np.asarray(X, dtype=np.float32)),
            "y": ray.put(y),
            "X_val": ray.put(None if X_val is None else np.asarray(X_val, dtype=np.float32)),
            "y_val": ray.put(y_val),
            "checkpoint_every": config.checkpoint_every,
        },
        scaling_config=ScalingConfig(
            num_workers=config.workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": config.cpus_per_worker},
            placement_strategy=config.placement_strategy,
        ),
        run_config=RunConfig(
            name=name,
            storage_path=str(storage),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=config.max_failures),
        ),
    )
    result = trainer.fit()
    assert result.checkpoint is not None
    import torch

    with result.checkpoint.as_directory() as folder:
        state = torch.load(os.path.join(folder, STATE_FILE), map_location="cpu")
    return TorchResult(
        state_dict=state["best_model"],
        history=state["history"],
        best_epoch=state["best_epoch"],
        resumed_from=resumed,
        run_path=str(run_path),
    )


def _last_epoch(run_path: Path) -> int | None:
    """The epoch of the newest checkpoint of an earlier run of this name, if any."""
    if not run_path.is_dir():
        return None
    import torch

    epochs = []
    for state in run_path.glob(f"checkpoint_*/{STATE_FILE}"):
        try:
            epochs.append(int(torch.load(state, map_location="cpu")["epoch"]))
        except Exception:
            continue
    return max(epochs) if epochs else None


def _train_loop(config: dict[str, Any]) -> None:  # runs on every Ray Train worker
    import ray
    import ray.train
    import torch
    from ray.train import Checkpoint
    from ray.train.torch import get_device, prepare_model

    spec: NetSpec = config["spec"]
    X = ray.get(config["X"])
    y = ray.get(config["y"])
    X_val, y_val = ray.get(config["X_val"]), ray.get(config["y_val"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = get_device()
    torch.manual_seed(spec.seed)
    np.random.seed(spec.seed)

    classification = spec.task == "classification"
    target_dtype = torch.long if classification else torch.float32
    X_part = torch.tensor(X[rank::world], dtype=torch.float32, device=device)
    y_part = torch.tensor(y[rank::world], dtype=target_dtype, device=device)
    if not classification:
        y_part = y_part.reshape(-1, 1)
    net = prepare_model(spec.build())
    module = net.module if hasattr(net, "module") else net
    optimizer = _optimizer(spec, net.parameters())
    loss_fn = torch.nn.CrossEntropyLoss() if classification else torch.nn.MSELoss()

    start, history = 0, []
    best = {"loss": float("inf"), "epoch": -1, "state": None, "waited": 0}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(os.path.join(folder, STATE_FILE), map_location=device)
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, history = state["epoch"] + 1, state["history"]
        best = {
            "loss": state["best_loss"],
            "epoch": state["best_epoch"],
            "state": state["best_model"],
            "waited": state["waited"],
        }
    generator = torch.Generator().manual_seed(spec.seed)
    for epoch in range(start, spec.epochs):
        net.train()
        order = torch.randperm(len(X_part), generator=generator).to(device)
        total = 0.0
        for i in range(0, len(X_part), spec.batch_size):
            batch = order[i : i + spec.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(net(X_part[batch]), y_part[batch])
            loss.backward()
            optimizer.step()
            total += float(loss) * len(batch)
        train_loss = total / max(len(X_part), 1)
        val_loss = _validation_loss(module, X_val, y_val, loss_fn, classification, device)
        watched = val_loss if val_loss is not None else train_loss
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": watched})
        if watched < best["loss"] - 1e-6:
            state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
            best = {"loss": watched, "epoch": epoch, "state": state, "waited": 0}
        else:
            best["waited"] += 1
        stop = spec.patience is not None and best["waited"] >= spec.patience
        last = stop or epoch == spec.epochs - 1
        due = last or (epoch + 1) % config["checkpoint_every"] == 0
        if due:  # each report waits for Ray Train's controller: report with checkpoints only
            with tempfile.TemporaryDirectory() as folder:
                saved = None
                if rank == 0:
                    torch.save(
                        {
                            "model": module.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "epoch": epoch,
                            "history": history,
                            "best_loss": best["loss"],
                            "best_epoch": best["epoch"],
                            "best_model": best["state"],
                            "waited": best["waited"],
                        },
                        os.path.join(folder, STATE_FILE),
                    )
                    saved = Checkpoint.from_directory(folder)
                ray.train.report(
                    {"epoch": epoch, "train_loss": train_loss, "val_loss": watched},
                    checkpoint=saved,
                )
        if spec.fail_after_epoch == epoch and checkpoint is None:
            raise RuntimeError(f"injected failure after epoch {epoch}")
        if stop:
            break


def _optimizer(spec: NetSpec, parameters: Any) -> Any:
    import torch

    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    kwargs: dict[str, Any] = {"lr": spec.learning_rate, "weight_decay": spec.weight_decay}
    if spec.optimizer == "sgd":
        kwargs["momentum"] = 0.9
    return kinds[spec.optimizer](parameters, **kwargs)


def _validation_loss(
    module: Any,
    X_val: np.ndarray | None,
    y_val: np.ndarray | None,
    loss_fn: Any,
    classification: bool,
    device: Any,
) -> float | None:
    if X_val is None or y_val is None or not len(X_val):
        return None
    import torch

    module.eval()
    with torch.no_grad():
        inputs = torch.tensor(X_val, dtype=torch.float32, device=device)
        target = torch.tensor(
            y_val, dtype=torch.long if classification else torch.float32, device=device
        )
        if not classification:
            target = target.reshape(-1, 1)
        return float(loss_fn(module(inputs), target))
