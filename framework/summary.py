"""Readable end-of-run summaries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from framework.data.validation import Failure, ValidationReport
from framework.store.registry import ModelRegistry, ModelVersion
from framework.training.evaluate import EvaluationReport
from framework.training.job import TrainResult


def data_report_table(report: ValidationReport, detail_rows: int = 12) -> Table:
    """Problems found by the checks: per column when few, else per check across columns."""
    dropped = report.rows_in - report.rows_out
    table = Table(
        title=f"Data checks: {report.rows_in} rows in, {report.rows_out} kept, "
        f"{dropped} dropped, {report.repaired} values repaired",
        title_justify="left",
    )
    if len(report.failures) <= detail_rows:
        for column in ("column", "check", "rows", "action", "examples (row: value)"):
            table.add_column(column)
        for f in report.failures:
            table.add_row(f.column, f.kind, str(f.count), f.action, _examples(f.examples))
        if not report.failures:
            table.add_row("(all)", "-", "0", "-", "no problems found")
        return table
    for column in ("check", "action", "rows", "columns (most affected first)", "example"):
        table.add_column(column)
    grouped: dict[tuple[str, str], list[Failure]] = {}
    for f in report.failures:
        grouped.setdefault((f.kind, f.action), []).append(f)
    for (kind, action), failures in grouped.items():
        failures.sort(key=lambda f: -f.count)
        columns = ", ".join(f"{f.column} ({f.count})" for f in failures[:3])
        if len(failures) > 3:
            columns += f" and {len(failures) - 3} more"
        total = sum(f.count for f in failures)
        table.add_row(kind, action, str(total), columns, _examples(failures[0].examples[:1]))
    return table


def _examples(examples: list[dict[str, Any]]) -> str:
    return ", ".join(f"{e['row']}: {_short(e['value'])}" for e in examples[:3])


def _short(value: Any) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else repr(value)
    return text if len(text) <= 16 else text[:15] + "…"


def metrics_table(evaluation: EvaluationReport) -> Table:
    table = Table(
        title=f"Metrics on the {evaluation.split} split ({evaluation.rows} rows)",
        title_justify="left",
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in evaluation.metrics.items():
        table.add_row(name, f"{value:.4f}")
    if evaluation.per_class:
        for cls, values in evaluation.per_class.items():
            table.add_row(f"f1 ({cls})", f"{values['f1']:.4f}")
    for column, groups in evaluation.subgroups.items():
        key = "f1_macro" if evaluation.task == "classification" else "rmse"
        for group, values in groups.items():
            table.add_row(f"{key} ({column}={group})", f"{values.get(key, float('nan')):.4f}")
    return table


def confusion_table(evaluation: EvaluationReport) -> Table | None:
    if not evaluation.confusion_matrix:
        return None
    table = Table(title="Confusion matrix (rows: true, columns: predicted)", title_justify="left")
    table.add_column("")
    for cls in evaluation.classes:
        table.add_column(cls, justify="right")
    for cls, row in zip(evaluation.classes, evaluation.confusion_matrix, strict=True):
        table.add_row(cls, *map(str, row))
    return table


def print_train_summary(console: Console, result: TrainResult) -> None:
    console.print()
    if result.noise.injected:
        injected = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in result.noise.injected.items())
        console.print(
            f"Noise simulator: {result.noise.rows_before} rows loaded, {result.noise.rows_after} "
            f"kept after imbalance; injected {injected} values"
        )
    console.print(data_report_table(result.report))
    for reason, count in result.report.dropped_rows.items():
        kind, _, column = reason.partition(":")
        console.print(f"  dropped {count} row(s): {kind.replace('_', ' ')} in {column!r}")
    missing = result.report.missing_after
    if missing:
        console.print(
            f"  {sum(missing.values())} missing values in {len(missing)} column(s) are filled "
            "by the fitted imputation"
        )
    console.print(f"  splits: {result.splits}; data fingerprint {result.fingerprint[:16]}")
    if result.stream is not None:
        info = result.stream
        console.print(
            f"  streamed: {info['chunks']} chunks of {info['chunk_rows']:,} rows x "
            f"{info['epochs']} epoch(s); samples kept {info['samples']}; peak memory "
            f"{info['peak_rss_mb']['scan']:.0f} MiB (scan), {info['peak_rss_mb']['fit']:.0f} MiB "
            "(fit)"
        )
    console.print(metrics_table(result.evaluation))
    confusion = confusion_table(result.evaluation)
    if confusion is not None:
        console.print(confusion)
    size_kib = result.exported.size_bytes / 1024
    console.print(
        f"ONNX model: {size_kib:.1f} KiB, single-row latency "
        f"p50 {result.latency_us['p50']:.1f} us, "
        f"p99 {result.latency_us['p99']:.1f} us; parity with the trained pipeline: "
        f"{result.parity.label_agreement:.2%} labels, max diff {result.parity.max_abs_diff:.2g}"
    )
    _print_guards(console, result.report.guards)
    if result.ood:
        ood = result.ood
        console.print(
            f"Out-of-distribution detector: {ood['method']} on {len(ood['features'])} numeric "
            f"feature(s); flags {ood['train_flagged_share']:.2%} of training and "
            f"{ood.get('test_flagged_share', 0.0):.2%} of test rows"
        )
    _print_robustness(console, result.robustness)
    if result.version is not None:
        alias = f" as [bold]{result.alias}[/]" if result.alias else ""
        console.print(
            f"Registered [bold]{result.version.name}[/] version [bold]{result.version.version}[/]"
            f"{alias} at {result.version.path}"
        )
        gate = result.champion_gate
        if gate is not None and not gate["passed"]:
            console.print(
                f"[bold yellow]Not made challenger[/] (champion gate against v{gate['champion']}): "
                + "; ".join(gate["reasons"]),
                soft_wrap=True,
            )
    else:
        console.print("Not registered (train.dry_run=true).")
    if result.output_dir is not None:
        console.print(f"Run reports: {result.output_dir}")
    if result.dashboard_url:
        console.print(f"Ray dashboard: {result.dashboard_url}")


def print_registry(console: Console, store: ModelRegistry, name: str | None) -> None:
    names = [name] if name else store.models()
    if not names or not any(store.versions(n) for n in names):
        console.print(f"No model versions in {store.root}" + (f" for {name!r}" if name else ""))
        return
    for model in names:
        table = Table(title=f"{model} ({store.root / model})", title_justify="left")
        for column in ("version", "aliases", "model", "created", "main metric", "size KiB", "data"):
            table.add_column(column)
        for v in store.versions(model):
            metric_name, metric = _main_metric(v.manifest)
            table.add_row(
                str(v.version),
                ", ".join(v.aliases),
                v.manifest.get("model_type", "?"),
                v.manifest.get("created_at", "?"),
                f"{metric_name}={metric:.4f}" if metric is not None else "-",
                f"{v.manifest.get('onnx', {}).get('size_bytes', 0) / 1024:.1f}",
                v.manifest.get("data", {}).get("fingerprint", "")[:12],
            )
        console.print(table)
        audit = store.audit(model)
        problems = store.verify_audit(model)
        chain = (
            "signatures and chain intact" if not problems else f"[red]{'; '.join(problems[:3])}[/]"
        )
        console.print(f"Audit log: {len(audit)} entries, {chain}. Latest:")
        for entry in audit[-5:]:
            moved = ""
            if "from" in entry or "to" in entry:
                moved = f" {entry.get('alias') or 'share'} {entry.get('from')} -> {entry.get('to')}"
            if "stage" in entry:  # task=pipeline
                moved = f" {entry['stage']} {entry.get('status')} (run {entry.get('run')})"
            reason = f" ({entry['reason']})" if entry.get("reason") else ""
            when = datetime.fromtimestamp(entry["time"]).isoformat(timespec="seconds")
            console.print(
                f"  {when} {entry['action']}{moved} by {entry.get('actor')}{reason}",
                markup=False,
            )


def _main_metric(manifest: dict[str, Any]) -> tuple[str, float | None]:
    test = (manifest.get("metrics") or {}).get("test") or {}
    for key in ("f1_macro", "rmse"):
        if key in test:
            return key, test[key]
    return "-", None


def print_version(console: Console, version: ModelVersion) -> None:
    m = version.manifest
    console.print(f"[bold]{version.name}[/] version [bold]{version.version}[/] at {version.path}")
    console.print(f"  aliases: {', '.join(version.aliases) or '-'}")
    for key in ("model_type", "task", "created_at", "code_version", "parent_version"):
        console.print(f"  {key}: {m.get(key)}")
    console.print(f"  data: {m.get('data')}")
    console.print(f"  onnx: {m.get('onnx')}")
    table = Table(title="Test metrics", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in ((m.get("metrics") or {}).get("test") or {}).items():
        table.add_row(key, f"{value:.4f}")
    console.print(table)
    files = Table(title="Files", title_justify="left")
    files.add_column("file")
    files.add_column("sha256")
    for name, digest in m.get("files", {}).items():
        files.add_row(name, digest)
    console.print(files)


def _print_guards(console: Console, guards: dict[str, Any]) -> None:
    if not guards or "note" in guards:
        return
    seen = []
    if "duplicates" in guards:
        d = guards["duplicates"]
        seen.append(f"{d['rows']} exact duplicate(s) ({d['policy']})")
    if "near_duplicates" in guards:
        seen.append(f"{guards['near_duplicates']['rows']} near duplicate(s)")
    if "leakage" in guards:
        d = guards["leakage"]
        leaked = sum(d[p]["exact"] + d[p]["near"] for p in ("validation", "test") if p in d)
        seen.append(f"{leaked} held-out row(s) duplicating training rows ({d['policy']})")
    errors = guards.get("label_errors", {})
    if "suspected" in errors:
        seen.append(
            f"{errors['suspected']} suspected label error(s) ({errors['share']:.1%}, "
            f"{errors['policy']})"
        )
    shift = guards.get("label_shift", {})
    if "distance" in shift:
        mark = " [red]SHIFTED[/]" if shift["shifted"] else ""
        seen.append(
            f"label shift {shift['distance']:.3f} against v{shift['against_version']}{mark}"
        )
    console.print("Data guards: " + "; ".join(seen))


def _print_robustness(console: Console, robustness: dict[str, Any] | None) -> None:
    if not robustness or "clean" not in robustness:
        return
    metric, eps = robustness["metric"], robustness["epsilon"]
    console.print(
        f"Robustness ({metric}): clean {robustness['clean']:.4f}, every numeric feature moved "
        f"up to {eps} std {robustness['all_features']:.4f} "
        f"({robustness['perturbation_seconds']:.2f} s)"
    )
    attack = robustness.get("attack") or {}
    if "queries" in attack:
        flagged = attack.get("flagged_by_ood_share")
        console.print(
            f"Black-box attack (HopSkipJump) on {attack['rows']} rows: {attack['queries']:,} "
            f"queries in {attack['seconds']:.1f} s; turned {attack['turned_share']:.0%}, "
            f"median distance {attack['median_distance_std'] or 0:.2f} std; accuracy under "
            f"attack at {eps} std {attack['accuracy_under_attack']:.4f}"
            + (f"; the OOD detector flags {flagged:.0%} of them" if flagged is not None else "")
        )
