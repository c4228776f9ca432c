"""``task=pipeline``: one command from data to a canaried version.

Stages, in order, each with its own exit status and an entry in the model's audit log
(``pipeline_stage``: the run, the stage, passed or failed, seconds, and why):

======================  ======  =========================================================
stage                   exit    what fails it
======================  ======  =========================================================
validate                3       the data's schema checks, guards or a missing input
train                   10      the fit (or a chunk checked while it streams)
evaluate                11      the evaluation on the held-out splits
gates                   4       fairness, ONNX parity, optimization, champion comparison
register                5       the registry (its audit key, its files)
infra_validation        9       the staging application: start, answers, errors, p99
alias                   12      moving the alias (a registry that changed meanwhile)
======================  ======  =========================================================

The version gets its alias (challenger beside a champion, champion for the first version)
only in the last stage; a failure anywhere before stops the run and aliases nothing, so the
serving application, which follows the aliases, never sees a refused candidate.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from framework.config import RootConfig
from framework.errors import ConfigError, DataValidationError, FrameworkError, InputPathError
from framework.store.registry import open_registry

#: Every stage, in order, with its exit status.
STAGES: dict[str, int] = {
    "validate": 3,
    "train": 10,
    "evaluate": 11,
    "gates": 4,
    "register": 5,
    "infra_validation": 9,
    "alias": 12,
}
AUDIT_ACTION = "pipeline_stage"


@dataclass
class StageRecord:
    name: str
    status: str = "running"  # running | passed | failed | skipped
    seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)


def new_run_id() -> str:
    """Short, sortable and unique enough to name a staging application and its routes."""
    return time.strftime("%m%d%H%M%S") + secrets.token_hex(2)


class Pipeline:
    """One run: its stages, their audit entries, and the exit status of the first failure."""

    def __init__(self, cfg: RootConfig, output_dir: Path, console: Console):
        self.cfg = cfg
        self.output_dir = output_dir
        self.console = console
        self.run_id = new_run_id()
        self.store = open_registry(cfg.store.path, cfg.security.audit_key_file)
        self.records: list[StageRecord] = []
        from framework.runner import actor

        self.actor = actor("pipeline")

    # -- stage bookkeeping ---------------------------------------------------------------
    @property
    def current(self) -> StageRecord | None:
        return self.records[-1] if self.records and self.records[-1].status == "running" else None

    def enter(self, name: str) -> None:
        """Close the running stage as passed and open ``name``."""
        if self.current is not None and self.current.name == name:
            return
        self._close("passed")
        number = list(STAGES).index(name) + 1
        self.console.rule(f"[bold]stage {number}/{len(STAGES)}: {name}[/]", align="left")
        self.records.append(StageRecord(name))

    def _note(self, **detail: Any) -> None:
        """Add figures to the running stage's audit entry."""
        if self.current is not None:
            self.current.detail.update(detail)

    def _close(self, status: str, **detail: Any) -> None:
        record = self.current
        if record is None:
            return
        record.status = status
        record.seconds = time.perf_counter() - record.started
        record.detail.update(detail)
        self.store.record(
            self.cfg.model_name,
            AUDIT_ACTION,
            self.actor,
            run=self.run_id,
            stage=record.name,
            status=status,
            exit_status=0 if status == "passed" else STAGES[record.name],
            seconds=round(record.seconds, 3),
            **record.detail,
        )

    # -- the run ------------------------------------------------------------------------
    def run(self) -> int:
        cfg, console = self.cfg, self.console
        if cfg.train.dry_run:
            raise ConfigError(
                ["train.dry_run: task=pipeline registers the version; set train.dry_run=false"]
            )
        console.print(
            f"[bold]pipeline[/] {cfg.model.type} on {cfg.data.name} -> {cfg.model_name} in "
            f"{cfg.store.path} (run {self.run_id})"
        )
        haproxy_dir = _ray_for_serving(cfg, console)
        try:
            return self._stages()
        finally:
            if haproxy_dir is not None:
                shutil.rmtree(haproxy_dir, ignore_errors=True)

    def _stages(self) -> int:
        from framework.progress import Stages
        from framework.summary import print_train_summary
        from framework.training.job import train

        cfg, console = self.cfg, self.console
        stages = Stages(console)
        try:
            result = train(cfg, self.output_dir, stages, phase=self.enter, hold_alias=True)
            assert result.version is not None
            version = result.version
            self._note(version=version.version)
            print_train_summary(console, result)
            self.enter("infra_validation")
            if cfg.pipeline.infra.enabled:
                from framework.shipping.infra import validate_infra

                report = validate_infra(cfg, version, self.run_id, stages)
                self._print_infra(report)
                (self.output_dir / "infra_validation.json").write_text(
                    json.dumps(report.to_dict(), indent=2)
                )
                self._note(**_infra_detail(report))
                if not report.passed:
                    from framework.errors import InfraValidationError

                    raise InfraValidationError(
                        f"v{version.version} was refused: " + "; ".join(report.reasons),
                        path="pipeline.infra",
                        hint="nothing was aliased; the serving application never saw it",
                    )
            else:
                self._note(skipped="pipeline.infra.enabled=false")
                console.print("[yellow]infra validation is off (pipeline.infra.enabled=false)[/]")
            self.enter("alias")
            alias = result.pending_alias or "challenger"
            self.store.set_alias(
                cfg.model_name,
                alias,
                version.version,
                self.actor,
                reason=f"pipeline run {self.run_id}: every stage passed",
            )
            self._note(version=version.version, alias=alias)
            self._close("passed")
        except BaseException as exc:
            return self._failed(exc)
        finally:
            self._write_summary()
        console.print(
            f"[bold green]Pipeline passed[/]: {cfg.model_name} v{version.version} is now "
            f"[bold]{alias}[/]"
            + (
                "; a running application with a monitor starts its canary"
                if alias == "challenger"
                else ""
            ),
            soft_wrap=True,
        )
        self._print_stages()
        return 0

    def _failed(self, exc: BaseException) -> int:
        record = self.current
        name = record.name if record is not None else "validate"
        if isinstance(exc, DataValidationError | InputPathError):
            name = "validate"  # a chunk refused while the fit streams is the data's failure
        if isinstance(exc, KeyboardInterrupt):
            message = "interrupted"
        elif isinstance(exc, FrameworkError):
            message = str(exc)
        else:
            message = f"{type(exc).__name__}: {exc}"
        if record is None:
            self.records.append(StageRecord(name))
        elif record.name != name:
            record.name = name
        self._close("failed", reason=message.splitlines()[0][:2000])
        err = Console(stderr=True, highlight=False)
        if not isinstance(exc, FrameworkError | KeyboardInterrupt):
            traceback.print_exception(exc)
        err.print(Text(f"error in stage {name}: ", style="red") + Text(message), soft_wrap=True)
        err.print(f"Pipeline stopped at {name} (exit status {STAGES[name]}); nothing was aliased.")
        self._print_stages()
        return 130 if isinstance(exc, KeyboardInterrupt) else STAGES[name]

    # -- output -------------------------------------------------------------------------
    def _write_summary(self) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        document = {
            "run": self.run_id,
            "model": self.cfg.model_name,
            "stages": [
                {
                    "stage": r.name,
                    "status": r.status,
                    "exit_status": 0 if r.status == "passed" else STAGES[r.name],
                    "seconds": round(r.seconds, 3),
                    **r.detail,
                }
                for r in self.records
            ],
        }
        (self.output_dir / "pipeline.json").write_text(json.dumps(document, indent=2))

    def _print_stages(self) -> None:
        table = Table(title=f"Pipeline run {self.run_id}", title_justify="left")
        for column in ("stage", "status", "exit", "seconds"):
            table.add_column(column, justify="left" if column in ("stage", "status") else "right")
        done = {r.name: r for r in self.records}
        for name, code in STAGES.items():
            r = done.get(name)
            status = r.status if r else "not run"
            table.add_row(
                name,
                status,
                "0" if status == "passed" else (str(code) if r else "-"),
                f"{r.seconds:.1f}" if r else "-",
            )
        self.console.print(table)

    def _print_infra(self, report: Any) -> None:
        load = report.load
        self.console.print(
            f"Staging {report.app}: ready in {report.deploy_s:.1f} s; replayed {report.replayed} "
            f"reference rows ({len(report.mismatches)} answered differently from ONNX offline); "
            f"load {load.sent} requests at {load.achieved_rps:.1f}/s: {load.errors} errors, "
            f"p50 {load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms (budget "
            f"{report.budget_p99_ms:g} ms); torn down: {'yes' if report.torn_down else 'NO'}",
            soft_wrap=True,
            highlight=False,
        )


def _infra_detail(report: Any) -> dict[str, Any]:
    load = report.load
    return {
        "version": report.version,
        "app": report.app,
        "replayed": report.replayed,
        "mismatches": len(report.mismatches),
        "requests": load.sent,
        "errors": load.errors,
        "p99_ms": round(load.p99_ms, 2),
        "budget_p99_ms": report.budget_p99_ms,
        "rate_rps": report.rate_rps,
        "torn_down": report.torn_down,
        **({"reasons": report.reasons} if report.reasons else {}),
    }


def _ray_for_serving(cfg: RootConfig, console: Console) -> Path | None:
    """Join the cluster, or start a local instance with ``task=serve``'s ingress settings,
    so that the staging application is measured on the HTTP path production uses."""
    from framework.cluster import find_cluster
    from framework.runner import joined_stages
    from framework.serving.deploy import serve_env

    haproxy_dir = None
    if find_cluster(cfg.ray) is None:
        haproxy_dir = Path(tempfile.mkdtemp(prefix="fw-haproxy-"))
        os.environ.update(serve_env(cfg.serve, haproxy_dir))
    joined_stages(cfg, console)
    return haproxy_dir
