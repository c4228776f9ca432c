"""Where ONNX Runtime runs: ``serve.device`` -> execution providers and Ray GPU requests."""

from __future__ import annotations

from typing import Literal

from framework.errors import ConfigError

Device = Literal["cpu", "cuda", "auto"]
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def resolve(device: Device, cluster_gpus: float) -> Literal["cpu", "cuda"]:
    """``auto`` is ``cuda`` where the cluster has GPUs, else ``cpu``."""
    if device == "auto":
        return "cuda" if cluster_gpus > 0 else "cpu"
    return device


def providers(device: Device, available: list[str] | None = None) -> list[str]:
    """ONNX Runtime execution providers for ``device`` (CPU always last, as a fallback).

    ``cuda`` without ONNX Runtime's CUDA provider is a config error naming ``serve.device``;
    ``auto`` falls back to the CPU.
    """
    if available is None:
        import onnxruntime as ort

        available = list(ort.get_available_providers())
    if device == "cpu":
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if device == "cuda":
        raise ConfigError(
            [
                "serve.device: got 'cuda'; ONNX Runtime here has no CUDAExecutionProvider "
                f"(available: {', '.join(available)}); install onnxruntime-gpu, or use cpu/auto"
            ]
        )
    return [CPU]


def replica_gpus(device: Device, per_replica: float, cluster_gpus: float) -> float:
    """GPUs Ray reserves for each replica (``ray_actor_options.num_gpus``)."""
    return per_replica if resolve(device, cluster_gpus) == "cuda" else 0.0
