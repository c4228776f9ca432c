"""``task=update version=N``: continue a registered version's model on new data.

The version's fitted pipeline (``pipeline.skops``, written for models with ``partial_fit``)
is loaded with skops, which refuses any type not on the list below, so nothing unknown is
ever unpickled. Its cleaning steps stay as fitted (the served inputs mean the same thing);
the model learns from ``data.source`` chunk by chunk, then the result goes through the same
evaluation, gates and registration as a new version, with ``parent: N`` in its manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from framework import registry
from framework.config import RootConfig
from framework.errors import ConfigError, RegistryError
from framework.progress import Stages
from framework.store.registry import ModelVersion, open_registry
from framework.training.job import FITTED, BaseVersion, TrainResult, train

#: Modules whose types a fitted pipeline may hold.
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "framework.training.clipping.")


def load_fitted(version: ModelVersion) -> Any:
    """The fitted pipeline of ``version``, refusing types outside the trusted modules."""
    import skops.io as sio

    path = version.file(FITTED)
    if not path.is_file():
        raise RegistryError(
            f"{version.name} v{version.version} ({version.manifest.get('model_type')}) has no "
            f"{FITTED}: only versions of models with partial_fit can be continued",
            hint="train it with model=sgd_classifier, sgd_regressor or mlp",
        )
    data = path.read_bytes()
    untrusted = sio.get_untrusted_types(data=data)
    refused = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
    if refused:
        raise RegistryError(
            f"{version.name} v{version.version}: {FITTED} holds types that are not loaded: "
            + ", ".join(refused)
        )
    return sio.loads(data, trusted=untrusted)


def update_config(cfg: RootConfig, version: ModelVersion) -> RootConfig:
    """``cfg`` with the version's own model config, checked against the new data's schema."""
    recorded = version.manifest.get("config", {}).get("model")
    if not recorded:
        raise RegistryError(f"{version.name} v{version.version}: the manifest has no model config")
    entry = registry.models.get(recorded["type"])
    if not getattr(entry.impl, "incremental", False):
        raise ConfigError(
            [
                f"version: v{version.version} is a {recorded['type']}, which cannot continue "
                "training (no partial_fit); use task=train"
            ]
        )
    model = entry.config(**recorded)
    signature = version.manifest.get("signature", {})
    declared = set(cfg.data.features)
    served = {*signature.get("numeric", []), *signature.get("categorical", [])}
    if served and declared != served:
        missing, extra = sorted(served - declared), sorted(declared - served)
        raise ConfigError(
            [
                f"data.columns: the new data's features differ from v{version.version}'s"
                + (f"; missing: {', '.join(missing)}" if missing else "")
                + (f"; not in the version: {', '.join(extra)}" if extra else "")
            ]
        )
    return cfg.model_copy(update={"model": model})


def update(cfg: RootConfig, output_dir: Path, stages: Stages) -> TrainResult:
    if cfg.version is None:
        raise ConfigError(["version: required for task=update (the version to continue)"])
    store = open_registry(cfg.store.path, cfg.security.audit_key_file)
    version = store.get(cfg.model_name, cfg.version)
    version.verify()
    pipeline = load_fitted(version)
    cfg = update_config(cfg, version)
    classes = getattr(pipeline.steps[-1][1], "classes_", None)
    base = BaseVersion(
        version.version, pipeline, None if classes is None else [str(c) for c in classes]
    )
    return train(cfg, output_dir, stages, base=base)
