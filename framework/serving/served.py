"""The served model inside one replica: registry, loaded versions, request rules, recorder.

The model server and the queue consumers hold the same parts, built here once, so that a
prediction through the queue is checked, routed and recorded exactly like one over HTTP.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson

from framework.config.app import AppConfig
from framework.config.data import ColumnSpec
from framework.serving.recorder import Recorder
from framework.serving.router import VersionRouter
from framework.serving.rules import RequestRules
from framework.store.registry import ModelRegistry

logger = logging.getLogger("ray.serve")


def replica_providers(device: str) -> list[str]:
    """ONNX Runtime providers of this replica: ``auto`` is cuda when Ray gave it a GPU."""
    from framework.export.devices import providers

    if device == "auto":
        import ray

        device = "cuda" if ray.get_gpu_ids() else "cpu"
    return providers(device)  # type: ignore[arg-type]


@dataclass
class ServedModel:
    registry: ModelRegistry
    router: VersionRouter
    rules: RequestRules
    recorder: Recorder


def load_served(settings: AppConfig, monitor: Any, batching: bool) -> ServedModel:
    """Verify and load the served alias, and build the rules and recorder around it."""
    serve = settings.serve
    registry = ModelRegistry(settings.store_path, settings.security.audit_key_file)
    router = VersionRouter(
        registry,
        settings.model_name,
        serve.alias,
        serve.onnx_threads,
        serve.batching.max_batch_rows if batching else 0,
        serve.batching.max_batch_wait_ms,
        replica_providers(serve.device),
    )
    first = router.first
    schema = first.manifest["schema"]
    columns = {
        c: ColumnSpec.model_validate(schema[c])
        for c in first.signature.numeric + first.signature.categorical
    }
    rules = RequestRules(columns, first.signature)
    name = router.model_name
    profile = None
    try:
        profile = orjson.loads(registry.get(name, first.number).file("profile.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        logger.warning("no training profile for %s v%s: regression bins off", name, first.number)
    recorder = Recorder(name, router, monitor, settings.monitor, profile)
    return ServedModel(registry, router, rules, recorder)
