"""The train graph: source -> noise -> checks -> split -> balance -> fit on Ray -> evaluate
-> export ONNX -> parity -> measure -> register."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from framework.config import RootConfig
from framework.data.noise import NoiseReport
from framework.data.profile import reference_profile, reference_rows
from framework.data.validation import ValidationReport
from framework.export.onnx import ExportedModel, export_pipeline
from framework.export.ood import Detector, OodScorer, fit_detector
from framework.export.parity import ParityReport, check_parity
from framework.export.predictor import OnnxPredictor
from framework.export.signature import NUMERIC_INPUT
from framework.progress import Stages
from framework.store.registry import ModelRegistry, ModelVersion, open_registry
from framework.training.evaluate import EvaluationReport, evaluate
from framework.training.fit import PreparedData, fit_inputs, fit_pipeline, prepare
from framework.training.pipeline import model_input
from framework.versions import code_version, package_versions


@dataclass
class TrainResult:
    """Everything the train graph produced, for the summary and for callers."""

    report: ValidationReport
    noise: NoiseReport
    splits: dict[str, int]
    fingerprint: str
    evaluation: EvaluationReport
    validation: EvaluationReport | None
    parity: ParityReport
    exported: ExportedModel
    latency_us: dict[str, float]
    fit_seconds: float
    pipeline: Any = None
    test_frame: pd.DataFrame | None = None
    fairness: dict[str, Any] | None = None
    champion_gate: dict[str, Any] | None = None
    #: The optimized variant's ONNX bytes, when one was chosen to be served.
    optimized: bytes | None = None
    #: How a chunked source was streamed (chunks, rows, samples, peak memory).
    stream: dict[str, Any] | None = None
    #: The out-of-distribution detector's manifest block, and the robustness figures.
    ood: dict[str, Any] | None = None
    robustness: dict[str, Any] | None = None
    version: ModelVersion | None = None
    alias: str | None = None
    #: With ``hold_alias``: the alias the version passed its gates for, not yet set.
    pending_alias: str | None = None
    dashboard_url: str | None = None
    output_dir: Path | None = None


#: Called with the name of each phase as it starts: validate, train, evaluate, gates, register.
PhaseHook = Callable[[str], None]


def _no_phase(name: str) -> None:
    return None


@dataclass
class BaseVersion:
    """A registered version that ``task=update`` continues: its number and fitted pipeline."""

    version: int
    pipeline: Any
    classes: list[str] | None


def train(
    cfg: RootConfig,
    output_dir: Path,
    stages: Stages,
    prepared: PreparedData | None = None,
    base: BaseVersion | None = None,
    phase: PhaseHook = _no_phase,
    hold_alias: bool = False,
) -> TrainResult:
    """Run the whole train graph for ``cfg``; register the model unless ``train.dry_run``.

    ``prepared`` skips loading and checking the data when it was prepared already. ``base``
    continues a registered version's fitted pipeline on ``cfg.data`` (``task=update``): the
    data streams chunk by chunk, the cleaning steps stay as fitted, the model warm-starts.
    ``phase`` hears each phase as it starts (``task=pipeline`` gives each its exit status).
    ``hold_alias`` registers the version without an alias (``pending_alias`` says which it
    earned), and a champion comparison that fails refuses the version instead of
    registering it without one.
    """
    import ray

    from framework import cluster

    output_dir.mkdir(parents=True, exist_ok=True)
    data = cfg.data
    if not ray.is_initialized():
        with stages.stage("join or start Ray"):
            joined = cluster.ensure_ray(cfg.ray)
        cluster.announce(stages.console, joined)
    conn = cluster.connection
    dashboard = conn.dashboard_url if conn else None
    stream_info: dict[str, Any] | None = None
    phase("validate")
    if prepared is None and (data.source.chunk_rows is not None or base is not None):
        phase("train")  # chunks are checked as they stream into the fit
        prepared, pipeline, fit_seconds, stream_info = _train_streaming(
            cfg, stages, output_dir, base
        )
    else:
        if prepared is None:
            prepared = prepare(cfg, stages, output_dir)
        phase("train")
        pipeline, fit_seconds = _fit_in_memory(cfg, prepared, stages)
    dataset, parts, task = prepared.dataset, prepared.splits, prepared.task
    numeric, categorical = data.numeric_features, data.categorical_features

    def inputs(frame: pd.DataFrame) -> pd.DataFrame:
        return model_input(frame, numeric, categorical)

    groups = {c: parts.test[c] for c in data.sensitive}
    phase("evaluate")
    with stages.stage("evaluate on the test split"):
        X_test = inputs(parts.test)
        test_eval = evaluate(pipeline, X_test, parts.test[data.target], task, "test", groups)
        val_eval = None
        if len(parts.validation):
            val_eval = evaluate(
                pipeline,
                inputs(parts.validation),
                parts.validation[data.target],
                task,
                "validation",
            )
        metrics = {
            "test": test_eval.to_dict(),
            "validation": val_eval.to_dict() if val_eval else None,
        }
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    phase("gates")
    fairness = None
    if data.sensitive and cfg.gates.fairness.enabled:
        from framework.governance.fairness import fairness_report, refusal

        with stages.stage(f"fairness gate on {', '.join(data.sensitive)}"):
            fairness = fairness_report(
                task,
                parts.test[data.target].to_numpy(),
                pipeline.predict(X_test),
                groups,
                test_eval.classes,
                cfg.gates.fairness,
                cfg.train.seed,
            )
            (output_dir / "fairness.json").write_text(json.dumps(fairness, indent=2))
        refused_fair = refusal(fairness)
        if refused_fair is not None:
            raise refused_fair
    with stages.stage("export the whole pipeline to ONNX"):
        exported = export_pipeline(pipeline, numeric, categorical, task)
        (output_dir / "model.onnx").write_bytes(exported.onnx_bytes)
    predictor = OnnxPredictor(exported.onnx_bytes, exported.signature, cfg.train.onnx_threads)
    with stages.stage("check ONNX parity on the test split"):
        parity = check_parity(pipeline, predictor, X_test, cfg.train.parity)
    with stages.stage("measure single-row latency"):
        latency = single_row_latency(
            predictor, parts.test[numeric + categorical], cfg.train.latency_runs
        )
    optimization = None
    if cfg.optimize.enabled:
        from framework.optimize import optimize_model, print_optimization, refusal

        with stages.stage("optimize: prune and quantize, measured against the float model"):
            optimization = optimize_model(
                cfg.optimize,
                pipeline,
                exported,
                inputs(parts.train),
                parts.train[data.target],
                X_test,
                parts.test[data.target],
                cfg.train.seed,
            )
            (output_dir / "optimization.json").write_text(
                json.dumps(optimization.to_dict_summary(), indent=2)
            )
        print_optimization(stages.console, optimization)
        refused = refusal(optimization)
        if refused is not None:
            raise refused
    served_bytes = exported.onnx_bytes if optimization is None else optimization.chosen.onnx_bytes
    detector = _fit_detector(cfg, stages, parts, numeric, predictor)
    robustness = None
    if cfg.train.robustness.enabled:
        from framework.governance.robustness import measure

        served = OnnxPredictor(served_bytes, exported.signature, cfg.train.onnx_threads)
        with stages.stage("measure robustness: bounded perturbations and a black-box attack"):
            robustness = measure(
                served,
                parts.test,
                data.target,
                parts.train,
                cfg.train.robustness,
                detector[1] if detector else None,
                cfg.train.seed,
            )
            (output_dir / "robustness.json").write_text(json.dumps(robustness, indent=2))
    result = TrainResult(
        report=dataset.report,
        noise=dataset.noise,
        splits=parts.sizes(),
        fingerprint=dataset.fingerprint,
        evaluation=test_eval,
        validation=val_eval,
        parity=parity,
        exported=exported,
        latency_us=latency,
        fit_seconds=fit_seconds,
        pipeline=pipeline,
        test_frame=parts.test,
        fairness=fairness,
        optimized=None if optimization is None else optimization.chosen.onnx_bytes,
        stream=stream_info,
        ood=detector[0].info if detector else None,
        robustness=robustness,
        dashboard_url=dashboard,
        output_dir=output_dir,
    )
    if cfg.train.dry_run:
        return result
    store = open_registry(cfg.store.path, cfg.security.audit_key_file)
    name = cfg.model_name
    alias = _alias_for("auto" if hold_alias else cfg.train.alias, store.aliases(name))
    champion_check = None
    if alias == "challenger" and cfg.gates.champion.enabled:
        from framework.governance.champion import champion_gate

        champion = store.resolve(name, "champion")
        runs = max(cfg.train.latency_runs, 200)
        with stages.stage(f"champion gate: compare with champion v{champion.version}"):
            champion_check = champion_gate(
                cfg.gates.champion,
                champion,
                served_bytes,
                exported.signature,
                model_input(parts.test, numeric, categorical).assign(
                    **{c: parts.test[c] for c in [data.target, *data.sensitive]}
                ),
                data.target,
                data.sensitive,
                cfg.gates.fairness.min_group_rows,
                lambda a, b: paired_latency(a, b, parts.test[numeric + categorical], runs),
            )
        if not champion_check["passed"]:
            if hold_alias:
                from framework.errors import ModelRefusedError

                raise ModelRefusedError(
                    f"the champion gate refused it against v{champion.version}: "
                    + "; ".join(champion_check["reasons"]),
                    path="gates.champion",
                    hint="nothing was registered or aliased",
                )
            alias = None
    if hold_alias:
        result.pending_alias, alias = alias, None
    phase("register")
    with stages.stage("register the model version"):
        files = {
            "model.onnx": served_bytes,
            "profile.json": json.dumps(
                dataset.profile or reference_profile(parts.train, data, task), indent=2
            ).encode(),
            "reference.npz": reference_rows(
                parts.train, data, task, cfg.monitor.drift.reference_rows, cfg.train.seed
            ),
            "metrics.json": json.dumps(metrics, indent=2).encode(),
            "validation_report.json": json.dumps(
                dataset.report.to_dict(), indent=2, default=str
            ).encode(),
        }
        manifest = _manifest(cfg, result, store.aliases(name).get("champion"))
        manifest["gates"] = {"fairness": fairness, "champion": champion_check}
        if detector is not None:
            files["detector.onnx"] = detector[0].onnx
            manifest["ood"] = detector[0].info
        if robustness is not None:
            manifest["robustness"] = robustness
        if stream_info is not None:
            manifest["stream"] = stream_info
        if base is not None:
            manifest["parent"] = base.version
        fitted_file = fitted_pipeline_file(cfg, pipeline)
        if fitted_file is not None:
            files[FITTED] = fitted_file
        if optimization is not None:
            files["parent.onnx"] = exported.onnx_bytes  # the float parent, kept for audit
            manifest["optimization"] = optimization.to_dict_summary()
        explain_files, manifest["explain"] = explanation_block(
            cfg, pipeline, exported, served_bytes, parts.train, parts.test
        )
        files.update(explain_files)
        files.update(card_files(cfg, store, served_bytes, exported, parts.test, manifest, files))
        result.version = store.register(name, files, manifest, alias=alias)
        result.alias = alias
        result.champion_gate = champion_check
        if champion_check is not None and not champion_check["passed"]:
            store.record(
                name,
                "challenger_refused",
                version=result.version.version,
                champion=champion_check["champion"],
                reason="; ".join(champion_check["reasons"]),
            )
    return result


def _fit_detector(
    cfg: RootConfig, stages: Stages, parts: Any, numeric: list[str], predictor: OnnxPredictor
) -> tuple[Detector, OodScorer] | None:
    """The out-of-distribution detector on the training split's numeric features."""
    settings = cfg.train.ood
    if not settings.enabled or not numeric:
        return None
    with stages.stage("fit the out-of-distribution detector (ONNX)"):
        train = parts.train[numeric].apply(pd.to_numeric, errors="coerce").to_numpy(float)
        detector = fit_detector(
            train,
            numeric,
            settings.quantile,
            settings.margin,
            settings.max_rows,
            cfg.train.seed,
            cfg.data.cleaning.iqr_k,
        )
        scorer = OodScorer(detector.onnx, detector.info)
        if len(parts.test):
            distances, _ = scorer.score(predictor.feeds_from_frame(parts.test)[NUMERIC_INPUT])
            detector.info["test_flagged_share"] = float(scorer.flagged(distances).mean())
    return detector, scorer


#: The fitted scikit-learn pipeline of an incremental model, in skops' format (no pickle):
#: what ``task=update`` continues from.
FITTED = "pipeline.skops"


def fitted_pipeline_file(cfg: RootConfig, pipeline: Any) -> bytes | None:
    """The fitted pipeline as skops bytes, for models that can continue training."""
    from framework import registry

    if not getattr(registry.models.get(cfg.model.type).impl, "incremental", False):
        return None
    import skops.io as sio

    return sio.dumps(pipeline)


def _fit_in_memory(cfg: RootConfig, prepared: PreparedData, stages: Stages) -> tuple[Any, float]:
    """Fit the pipeline on the whole training split (in a Ray task, or on Ray Train)."""
    import ray

    inputs_ = fit_inputs(cfg, prepared, stages)
    distributed = inputs_.plugin.distributed
    where = (
        f"on Ray Train ({cfg.train.distributed.workers} worker(s))"
        if distributed
        else "in a Ray task"
    )
    with stages.stage(f"fit {cfg.model.type} {where}"):
        if not distributed:  # Ray Train's workers wait for their own resources
            _reserve(cfg, stages, f"fitting {cfg.model.type}")
        started = time.perf_counter()  # the fit's own time, not the wait for CPUs
        if distributed:  # the estimator starts its own Ray Train workers
            pipeline = fit_pipeline(
                inputs_.plugin,
                inputs_.pipeline,
                inputs_.X,
                inputs_.y,
                inputs_.weights,
                validation=inputs_.validation,
            )
        else:
            fit = ray.remote(fit_pipeline).options(
                num_cpus=cfg.train.num_cpus, name=f"fit:{cfg.model.type}"
            )
            pipeline = ray.get(
                fit.remote(
                    inputs_.plugin,
                    inputs_.pipeline,
                    ray.put(inputs_.X),
                    ray.put(inputs_.y),
                    inputs_.weights,
                )
            )
        fit_seconds = time.perf_counter() - started
    return pipeline, fit_seconds


def _reserve(cfg: RootConfig, stages: Stages, what: str) -> None:
    """Wait (visibly, within ``ray.resource_wait_s``) for the CPUs a training task reserves."""
    from framework.cluster import wait_for_cpus

    wait_for_cpus(
        cfg.train.num_cpus,
        what=what,
        path="train.num_cpus",
        wait_s=cfg.ray.resource_wait_s,
        console=stages.console,
    )


def _get(ref: Any) -> Any:
    """``ray.get``, with the framework's own errors raised as themselves (exit statuses)."""
    import ray

    from framework.data.files import framework_cause

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = framework_cause(exc)
        if cause is not None:
            raise cause from None
        raise


def _train_streaming(
    cfg: RootConfig, stages: Stages, output_dir: Path, base: BaseVersion | None = None
) -> tuple[PreparedData, Any, float, dict[str, Any]]:
    """Scan the chunked source once, then fit chunk by chunk; both in Ray tasks. With
    ``base``, the model continues from that version's fitted pipeline."""
    import ray

    from framework.data.dataset import Dataset, Splits
    from framework.data.source import DEFAULT_CHUNK_ROWS
    from framework.training.stream import check_incremental, class_weights, fit_stream, scan

    data = cfg.data
    plugin = check_incremental(cfg)
    task = plugin.task
    chunk_rows = data.source.chunk_rows or DEFAULT_CHUNK_ROWS
    with stages.stage(
        f"scan {data.source.type} in chunks of {chunk_rows:,} rows: noise, checks, "
        "split, samples (one streaming pass, in a Ray task)"
    ):
        _reserve(cfg, stages, f"scanning {data.source.type}")
        scanned = _get(
            ray.remote(max_calls=1)(scan).options(num_cpus=cfg.train.num_cpus).remote(cfg, task)
        )
        scanned.report.guards = {
            "note": "not run: the duplicate, leakage and label guards need the data in memory"
        }
        scanned.report.save(output_dir / "validation_report.json")
    weights = (
        class_weights(scanned.classes, data.balance.method) if task == "classification" else None
    )
    classes = sorted(scanned.classes) if task == "classification" else None
    if base is not None and classes is not None and base.classes is not None:
        new = sorted(set(classes) - set(base.classes))
        if new:
            from framework.errors import DataValidationError

            raise DataValidationError(
                f"the new data has class(es) v{base.version} never learned: {', '.join(new)}",
                path=f"data.columns.{data.target}",
                hint="a warm start keeps the classes it was trained on; use task=train",
            )
        classes = list(base.classes)
    verb = f"continue v{base.version}'s" if base is not None else "fit"
    with stages.stage(
        f"{verb} {cfg.model.type} chunk by chunk ({scanned.chunks} chunks x {plugin.epochs()} "
        "epochs, partial_fit, in a Ray task)"
    ):
        _reserve(cfg, stages, f"fitting {cfg.model.type}")
        started = time.perf_counter()
        fitted = _get(
            ray.remote(max_calls=1)(fit_stream)
            .options(num_cpus=cfg.train.num_cpus, name=f"fit:{cfg.model.type}")
            .remote(cfg, task, scanned.train, classes, weights, base and base.pipeline)
        )
        fit_seconds = time.perf_counter() - started
    dataset = Dataset(
        scanned.train,
        data,
        scanned.report,
        scanned.noise,
        digest=scanned.digest,
        profile=scanned.profile,
    )
    parts = Splits(scanned.train, scanned.validation, scanned.test, counts=scanned.counts)
    info = {
        "chunk_rows": chunk_rows,
        "chunks": scanned.chunks,
        "epochs": fitted.epochs,
        "rows": scanned.counts,
        "samples": {
            "train": len(scanned.train),
            "validation": len(scanned.validation),
            "test": len(scanned.test),
        },
        "class_weights": weights,
        "scan_seconds": round(scanned.seconds, 3),
        "peak_rss_mb": {"scan": round(scanned.peak_rss_mb, 1), "fit": round(fitted.peak_rss_mb, 1)},
        "approximate": [
            "cleaning statistics (imputation, clipping, scaling, encoding) fitted on the "
            "training sample",
            "profile quantiles and bins, and the drift reference, from the training sample "
            "(counts, missing rates, means, deviations, extremes and frequencies are exact)",
            "metrics and gates on the held-out samples",
            "split drawn per row (not stratified)",
            "outlier flags in the check report use each chunk's fences",
        ],
    }
    (output_dir / "stream.json").write_text(json.dumps(info, indent=2))
    return PreparedData(dataset, parts, task), fitted.pipeline, fit_seconds, info


def explanation_block(
    cfg: RootConfig,
    pipeline: Any,
    exported: ExportedModel,
    served: bytes,
    train_rows: pd.DataFrame,
    test_rows: pd.DataFrame,
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Explanation files and their manifest block; exact explainers are checked here:
    additivity against the served output, and TreeSHAP against shap on the fitted model."""
    from framework.explain.loader import ARRAYS, FEATURES, build_explainer
    from framework.explain.register import explanation_files, model_output_gap, tree_agreement

    data = cfg.data
    numeric, categorical = data.numeric_features, data.categorical_features
    rows = cfg.monitor.drift.reference_rows
    sample = (
        train_rows.sample(n=rows, random_state=cfg.train.seed)
        if len(train_rows) > rows
        else train_rows
    )
    reference = model_input(sample, numeric, categorical)
    files, block = explanation_files(
        cfg, pipeline, exported.signature, reference, served == exported.onnx_bytes
    )
    from framework.explain.features import feeds_of

    predictor = OnnxPredictor(served, exported.signature, cfg.train.onnx_threads)
    explainer = build_explainer(
        block, files[ARRAYS], files.get(FEATURES), predictor, exported.signature
    )
    # exact explainers are cheap: 200 rows; model-agnostic ones cost samples x background each
    check = model_input(test_rows.head(200 if block["exact"] else 50), numeric, categorical)
    found = explainer(feeds_of(check, exported.signature))
    block["importance"] = found.importance()
    block["additivity_gap"] = found.additivity_gap()
    if block["exact"]:
        block["model_output_max_diff"] = model_output_gap(pipeline, found, check)
    if block["exact"] and block["method"] == "tree":
        try:
            block["shap_agreement_max_diff"] = tree_agreement(
                pipeline, explainer, check, exported.signature
            )
        except Exception as exc:  # shap's own TreeExplainer does not take every ensemble
            block["shap_agreement_max_diff"] = None
            block["shap_agreement_note"] = f"not compared: shap.TreeExplainer: {exc}"
    return files, block


def card_files(
    cfg: RootConfig,
    store: ModelRegistry,
    served: bytes,
    exported: ExportedModel,
    test: pd.DataFrame,
    manifest: dict[str, Any],
    files: dict[str, bytes],
) -> dict[str, bytes]:
    """``evaluation.npz`` (the served model's test predictions) and the rendered model card."""
    from framework.governance.card import (
        CardInputs,
        evaluation_arrays,
        read_evaluation,
        render_card,
    )

    data = cfg.data
    predictor = OnnxPredictor(served, exported.signature, cfg.train.onnx_threads)
    predicted = predictor.predict_frame(test[data.numeric_features + data.categorical_features])
    evaluation = evaluation_arrays(
        test[data.target].to_numpy(),
        predicted.labels,
        predicted.scores,
        {c: test[c] for c in data.sensitive},
    )
    upcoming = max((v.version for v in store.versions(cfg.model_name)), default=0) + 1
    rendered, _ = render_card(
        CardInputs(
            name=cfg.model_name,
            version=upcoming,
            manifest=manifest,
            metrics=json.loads(files["metrics.json"]),
            validation=json.loads(files["validation_report.json"]),
            evaluation=read_evaluation(evaluation),
            card=cfg.card,
        )
    )
    return {"evaluation.npz": evaluation, **rendered}


def _alias_for(choice: str, aliases: dict[str, int]) -> str | None:
    if choice == "none":
        return None
    if choice == "auto":
        return "challenger" if "champion" in aliases else "champion"
    return choice


def single_row_latency(predictor: OnnxPredictor, rows: pd.DataFrame, runs: int) -> dict[str, float]:
    """p50/p99 microseconds of one-row predictions from JSON-like records."""
    records_list = _latency_records(rows)
    timings = []
    for i in range(runs + 10):
        record = records_list[i % len(records_list)]
        started = time.perf_counter_ns()
        predictor.predict_records([record])
        timings.append(time.perf_counter_ns() - started)
    measured = np.array(timings[10:]) / 1000.0
    return {"p50": float(np.percentile(measured, 50)), "p99": float(np.percentile(measured, 99))}


def _latency_records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Up to 64 rows as JSON-like records (missing values as None), as requests carry them."""
    sample = rows.head(64)
    return sample.astype(object).where(sample.notna(), None).to_dict("records") or [{}]


def paired_latency(
    a: OnnxPredictor, b: OnnxPredictor, rows: pd.DataFrame, runs: int
) -> tuple[float, float]:
    """Single-row p50 microseconds of two predictors, timed call by call in turn."""
    records_list = _latency_records(rows)
    timings: tuple[list[int], list[int]] = ([], [])
    for i in range(runs + 10):
        record = [records_list[i % len(records_list)]]
        for predictor, found in ((a, timings[0]), (b, timings[1])):
            started = time.perf_counter_ns()
            predictor.predict_records(record)
            found.append(time.perf_counter_ns() - started)
    first, second = (float(np.percentile(np.array(t[10:]) / 1000.0, 50)) for t in timings)
    return first, second


def _manifest(cfg: RootConfig, result: TrainResult, parent: int | None) -> dict[str, Any]:
    return {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "task": result.exported.signature.task,
        "model_type": cfg.model.type,
        "signature": result.exported.signature.to_dict(),
        "schema": {n: c.model_dump() for n, c in cfg.data.columns.items()},
        "config": cfg.model_dump(mode="json"),
        "data": {
            "name": cfg.data.name,
            "fingerprint": result.fingerprint,
            "splits": result.splits,
            "labels": result.report.guards.get("label_shift", {}).get("current"),
        },
        "metrics": {
            "test": result.evaluation.metrics,
            "validation": result.validation.metrics if result.validation else None,
        },
        "parity": result.parity.to_dict(),
        "onnx": {"size_bytes": result.exported.size_bytes, "latency_us": result.latency_us},
        "code_version": code_version(),
        "packages": package_versions(),
        "parent_version": parent,
    }
