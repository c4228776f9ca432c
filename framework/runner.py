"""Task -> graph: each ``task=`` value maps to the function that builds and runs its graph."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from framework.config import RootConfig
from framework.errors import RegistryError
from framework.progress import Stages
from framework.store.registry import ModelRegistry, open_registry


def joined_stages(cfg: RootConfig, console: Console) -> Stages:
    """The stage printer of a task, after its first stage: join or start Ray."""
    from framework.cluster import announce, ensure_ray

    stages = Stages(console)
    with stages.stage("join or start Ray"):
        conn = ensure_ray(cfg.ray)
    announce(console, conn)
    return stages


def run_train(cfg: RootConfig, output_dir: Path, console: Console) -> int:

    console.print(
        f"[bold]train[/] {cfg.model.type} on {cfg.data.name} -> registry {cfg.store.path}"
    )
    stages = joined_stages(cfg, console)  # first, before the training code is imported
    from framework.summary import print_train_summary
    from framework.training.job import train

    result = train(cfg, output_dir, stages)
    print_train_summary(console, result)
    return 0


def run_registry(cfg: RootConfig, output_dir: Path, console: Console) -> int:
    from framework.summary import print_registry, print_version

    store = open_registry(cfg.store.path, cfg.security.audit_key_file)
    if cfg.verify:
        return verify_registry(cfg, store, console)
    if cfg.version is not None:
        version = store.get(cfg.model_name, cfg.version)
        version.verify()
        print_version(console, version)
    else:
        print_registry(console, store, cfg.store.model_name)
    return 0


def verify_registry(cfg: RootConfig, store: ModelRegistry, console: Console) -> int:
    """``task=registry verify``: every problem printed; exit 5 when there is any."""
    if cfg.version is not None:
        store.get(cfg.model_name, cfg.version).verify()
        console.print(f"{cfg.model_name} v{cfg.version}: manifest, files and audit log verified")
        return 0
    models = [cfg.store.model_name] if cfg.store.model_name else store.models()
    problems = store.verify_all(cfg.store.model_name)
    for problem in problems:
        console.print(f"[red]FAILED[/] {problem}", highlight=False)
    if problems:
        raise RegistryError(
            f"{len(problems)} problem(s) in the registry {store.root}",
            hint="restore the named files from a backup, or re-register the versions",
        )
    versions = sum(len(store.versions(m)) for m in models)
    console.print(
        f"verified {versions} version(s) of {len(models)} model(s) in {store.root}: "
        f"manifests, files, audit logs and aliases intact (audit key: {store.key.where})"
    )
    return 0


def run_serve(cfg: RootConfig, output_dir: Path, console: Console) -> int:
    """Deploy the Ray Serve application for ``serve.alias``; serve until SIGINT/SIGTERM."""
    import os

    from framework.cluster import announce, ensure_ray, find_cluster, record_address
    from framework.errors import ClusterError, FrameworkError
    from framework.serving.deploy import (
        app_args,
        check_http_port,
        check_joinable,
        check_servable,
        example_row,
        serve_env,
        wait_until_stopped,
    )

    version = check_servable(cfg)
    serving = cfg.serve
    name = serving.app_name or cfg.model_name
    if cfg.security.auth == "off":
        console.print(
            "[bold red]WARNING: security.auth=off - every route answers without an API key[/]"
        )
    # HAProxy's admin socket path must stay under ~100 characters: a short folder of its own.
    haproxy_dir = Path(tempfile.mkdtemp(prefix="fw-haproxy-"))
    env = serve_env(serving, haproxy_dir)
    joining = find_cluster(cfg.ray) is not None
    if not joining:
        check_http_port(serving.host, serving.port)  # before a Ray instance is started
        os.environ.update(env)  # read by the Ray instance this command starts
    console.print(
        f"[bold]serve[/] {version.name} v{version.version} ({serving.alias}) "
        f"on http://{serving.host}:{serving.port}"
    )
    if serving.queue.enabled:
        _check_broker(cfg, name, console)
    conn = ensure_ray(cfg.ray)
    announce(console, conn)

    from ray import serve

    from framework.serving.deploy import build_app

    if conn is not None and conn.joined:
        try:
            check_joinable(name, serving.host, serving.port)
        except ClusterError as refused:
            if not conn.found_by.startswith("recorded"):
                raise  # a cluster the user named: no silent fallback
            # The cluster found on this machine belongs to another application (another
            # copy of the framework, say): this one runs on an instance of its own.
            console.print(
                f"note: {refused.message}; serving on a private Ray instance instead",
                soft_wrap=True,
                markup=False,
            )
            import ray

            ray.shutdown()
            check_http_port(serving.host, serving.port, refused.message)
            os.environ.update(env)
            conn = ensure_ray(cfg.ray.model_copy(update={"address": "local"}))
            announce(console, conn)
    if conn is not None and conn.joined:
        missing = [k for k, v in env.items() if os.environ.get(k) != v]
        if missing:
            console.print(
                "note: the joined cluster's Ray Serve HTTP mode is what it was started with "
                f"(for the fast path set {', '.join(missing)} where it starts)",
                soft_wrap=True,
            )
    elif conn is not None and cfg.ray.address is None and not joining:
        record_address(conn.address)  # later commands on this machine join this instance
    started = time.perf_counter()
    try:
        serve.start(http_options={"host": serving.host, "port": serving.port})
        serve.run(
            build_app(app_args(cfg)),
            name=name,
            route_prefix=serving.route_prefix,
            blocking=False,
        )
    except Exception as exc:  # a replica failed to start: say why, without Ray's traceback
        from framework.serving.deploy import startup_failure

        raise FrameworkError(
            f"the serving application did not start: {startup_failure(name) or exc}"
        ) from None
    base = f"http://{serving.host}:{serving.port}{serving.route_prefix.rstrip('/')}"
    example = json.dumps([example_row(version)])
    auth = "" if cfg.security.auth == "off" else f' -H "{cfg.security.header}: $FRAMEWORK_API_KEY"'
    console.print(f"Ready in {time.perf_counter() - started:.1f} s.")
    console.print(f"  predict:  POST {base}/v1/models/{version.name}/predict")
    console.print(f"  v2 infer: POST {base}/v2/models/{version.name}/infer")
    console.print(f"  docs:     {base}/docs  (OpenAPI: {base}/openapi.json)")
    if cfg.monitor.enabled:
        console.print(f"  feedback: POST {base}/v1/feedback  (labels for prediction ids)")
        console.print(f"  monitor:  GET {base}/v1/admin/monitor  (drift, live quality, rollout)")
        from framework.cluster import metrics_url

        metrics = metrics_url()
        if metrics:
            console.print(f"  metrics:  {metrics}  (Prometheus, Ray metrics)")
    if serving.queue.enabled:
        console.print(f"  async:    POST {base}/v1/models/{version.name}/predict_async (202)")
        console.print(f"  tasks:    GET {base}/v1/tasks/<task>  (pending, done, failed)")
    console.print("Example request:")
    console.print(
        f"  curl -s {base}/v1/models/{version.name}/predict{auth} "
        f"-H 'content-type: application/json' -d '{example}'",
        soft_wrap=True,
        markup=False,
    )
    console.print("Serving until interrupted (Ctrl+C or SIGTERM).")
    reason = wait_until_stopped()
    console.print(f"{reason}: draining and stopping the application...")
    stop = time.perf_counter()
    serve.delete(name)
    import ray

    if conn is not None and not conn.joined:  # this command started the instance: stop it
        from framework.cluster import forget_address

        serve.shutdown()
        forget_address(conn.address)
    ray.shutdown()
    shutil.rmtree(haproxy_dir, ignore_errors=True)
    console.print(f"Stopped in {time.perf_counter() - stop:.1f} s.")
    return 0


def run_build_serve_config(cfg: RootConfig, output_dir: Path, console: Console) -> int:
    from framework.serving.deploy import serve_env, write_serve_config

    if cfg.target == "kuberay":
        from framework.serving.kuberay import write_manifests

        path = write_manifests(cfg)
        console.print(f"Wrote the KubeRay manifests {path}")
        console.print(
            "They name Secrets (API keys, audit key) and a volume claim for the registry: "
            "the file's header says how to create them.",
            soft_wrap=True,
        )
        return 0
    path = write_serve_config(cfg)
    console.print(f"Wrote the Ray Serve config {path}")
    env = " ".join(f"{k}={v}" for k, v in serve_env(cfg.serve).items())
    console.print(f"Run it with Ray's CLI:  {env} serve run {path}", soft_wrap=True)
    return 0


def run_api_key(cfg: RootConfig, output_dir: Path, console: Console) -> int:
    from framework.errors import ConfigError
    from framework.security.keys import add_key, resolve_keys_file

    if not cfg.security.key_name:
        raise ConfigError(["security.key_name: required for task=api_key (a name for the key)"])
    if not cfg.security.keys_file:
        raise ConfigError(["security.keys_file: required for task=api_key (where hashes go)"])
    path = resolve_keys_file(cfg.security)
    key, entry = add_key(path, cfg.security.key_name, list(cfg.security.key_roles))
    console.print(
        f"Created API key {entry.name!r} with roles {sorted(entry.roles)}; its sha256 is in {path}."
    )
    console.print("The key is shown only now; keep it secret:")
    console.print(key, markup=False, highlight=False)
    return 0


def run_monitor(cfg: RootConfig, output_dir: Path, console: Console) -> int:
    """Check new data for drift against the served version; exit 6 when it drifted."""
    from framework.monitoring.job import DRIFT_EXIT, monitor_batch, print_result

    console.print(f"[bold]monitor[/] {cfg.model_name} ({cfg.serve.alias}) against new data")
    result = monitor_batch(cfg, output_dir)
    print_result(console, result)
    return DRIFT_EXIT if result.report.drift else 0


def _check_broker(cfg: RootConfig, app_name: str, console: Console) -> None:
    """Say where the task queue is, and whether its broker answers now (never fatal)."""
    import asyncio

    from framework.serving.queue import TaskQueue

    queue = TaskQueue(cfg.serve.queue, app_name, cfg.store.path)

    async def ping() -> None:
        try:
            await queue.client.ping()
        finally:
            await queue.close()

    try:
        asyncio.run(ping())
    except Exception as exc:
        console.print(
            f"[yellow]WARNING[/]: the task queue's broker at {queue.where} does not answer "
            f"({exc}); predict_async answers 503 with Retry-After and the consumers keep "
            "trying until it does",
            soft_wrap=True,
        )
        return
    console.print(
        f"async: stream {queue.stream} (group {queue.group}) on {queue.where}; dead letters: "
        f"{queue.dead}",
        soft_wrap=True,
        highlight=False,
    )


def actor(role: str = "cli") -> str:
    """Who the audit log names for a command: the role and the user running it."""
    import getpass

    try:
        return f"{role}:{getpass.getuser()}"
    except Exception:
        return role


def run_promote(cfg: RootConfig, output_dir: Path, console: Console) -> int:
    """Make the challenger (or version=N) champion; a running application follows."""
    return _move(cfg, console, "promote")


def run_rollback(cfg: RootConfig, output_dir: Path, console: Console) -> int:
    """Drop the challenger, or restore the previous champion (or make version=N champion)."""
    return _move(cfg, console, "rollback")


def _move(cfg: RootConfig, console: Console, action: str) -> int:
    from framework.monitoring import rollout

    store = open_registry(cfg.store.path, cfg.security.audit_key_file)
    changes = getattr(rollout, action)(store, cfg.model_name, cfg.version, actor())
    done = "Promoted" if action == "promote" else "Rolled back"
    console.print(f"{done} {cfg.model_name}: {_moves(changes)}")
    console.print(f"Aliases now: {store.aliases(cfg.model_name)}")
    return 0


def _moves(changes: dict[str, int | None]) -> str:
    return ", ".join(
        f"{alias} removed" if v is None else f"{alias} -> v{v}" for alias, v in changes.items()
    )


def run_explain(cfg: RootConfig, output_dir: Path, console: Console) -> int:
    """Explain every row of ``explain.input``: Parquet attributions and an HTML report."""
    from framework.explain.batch import explain_file

    console.print(f"[bold]explain[/] {cfg.model_name} rows of {cfg.explain.input}")
    result = explain_file(cfg, output_dir)
    top = sorted(result.importance.items(), key=lambda kv: -kv[1])[:5]
    console.print(
        f"Explained {result.rows} rows with {result.version.name} v{result.version.version} "
        f"({result.method}) in {result.seconds:.2f} s ({result.rows_per_s:,.0f} rows/s)."
    )
    console.print("Most important columns: " + ", ".join(f"{k} ({v:.4f})" for k, v in top))
    console.print(f"Attributions: {result.parquet}")
    console.print(f"Report: {result.report}")
    return 0


def run_card(cfg: RootConfig, output_dir: Path, console: Console) -> int:
    """Render a version's model card again (``card`` fields set now fill its to-dos)."""
    from framework.data.files import write_atomic
    from framework.governance.card import render_card, version_inputs

    store = open_registry(cfg.store.path, cfg.security.audit_key_file)
    version = store.resolve(cfg.model_name, cfg.version or cfg.serve.alias)
    version.verify()
    files, todo = render_card(version_inputs(version, cfg.card))
    folder = output_dir / "card"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        write_atomic(folder / name, data)
    console.print(f"Model card of {version.name} v{version.version}: {folder / 'model_card.md'}")
    console.print(f"HTML: {folder / 'model_card.html'} ({len(files) - 2} plots beside it)")
    if todo:
        console.print("To do (set them in the card config group): " + "; ".join(todo))
    return 0


def run_reproduce(cfg: RootConfig, output_dir: Path, console: Console) -> int:
    """Rebuild a version from its manifest; exit 0 when identical, 8 with the differences."""
    from rich.table import Table

    from framework.errors import ReproductionError
    from framework.governance.reproduce import reproduce

    console.print(
        f"[bold]reproduce[/] {cfg.model_name} {cfg.version or cfg.serve.alias} from its manifest"
    )
    stages = joined_stages(cfg, console)
    found = reproduce(cfg, output_dir, stages)
    table = Table(title=f"Test metrics of v{found.version.version}", title_justify="left")
    for column in ("metric", "recorded", "rebuilt", "difference"):
        table.add_column(column, justify="right" if column != "metric" else "left")
    for name, (old, new) in found.metrics.items():
        table.add_row(name, f"{old:.6f}", f"{new:.6f}", f"{abs(new - old):.2e}")
    console.print(table)
    console.print(
        f"ONNX predictions on the test split: labels agree on {found.label_agreement:.2%}, "
        f"scores differ by up to {found.max_score_diff:.2e}."
    )
    if found.packages:
        console.print(
            "Packages that differ from the build: "
            + ", ".join(f"{k} {old} -> {new}" for k, (old, new) in found.packages.items()),
            soft_wrap=True,
        )
    if found.code[0] != found.code[1]:
        console.print(f"Code version: {found.code[0]} recorded, {found.code[1]} now.")
    if found.identical:
        console.print(f"[bold green]Reproduced[/] {found.version.name} v{found.version.version}.")
        return 0
    error = ReproductionError(
        f"{found.version.name} v{found.version.version} was not reproduced: "
        + "; ".join(found.differences)
    )
    console.print(f"[bold red]error:[/] {error.message}", soft_wrap=True, markup=True)
    return error.exit_code


def run_update(cfg: RootConfig, output_dir: Path, console: Console) -> int:
    """Continue a registered version on new data; register the result (``parent: N``)."""

    console.print(
        f"[bold]update[/] {cfg.model_name} v{cfg.version} on {cfg.data.name} -> registry "
        f"{cfg.store.path}"
    )
    stages = joined_stages(cfg, console)
    from framework.summary import print_train_summary
    from framework.training.update import update

    result = update(cfg, output_dir, stages)
    print_train_summary(console, result)
    return 0


def run_score(cfg: RootConfig, output_dir: Path, console: Console) -> int:
    """Score files in bulk on Ray Data; predictions, rejects and a drift report."""
    from framework.scoring.batch import score

    console.print(
        f"[bold]score[/] {cfg.score.input} with {cfg.model_name} {cfg.version or cfg.serve.alias}"
    )
    joined_stages(cfg, console)
    result = score(cfg, output_dir)
    console.print(
        f"Scored {result.scored:,} of {result.rows_in:,} rows from {result.files} file(s) with "
        f"{result.version.name} v{result.version.version} in {result.seconds:.1f} s "
        f"({result.rows_per_s:,.0f} rows/s); rejected {result.rejected:,}."
    )
    for reason, count in sorted(result.reject_reasons.items(), key=lambda kv: -kv[1])[:10]:
        console.print(f"  rejected {count:,}: {reason}", markup=False, soft_wrap=True)
    if result.drift is not None:
        drifted = ", ".join(result.drift.drifted) or "none"
        console.print(
            f"Drift of the scored rows against v{result.version.version}'s reference: "
            f"{drifted}"
            + (
                f"; untestable: {', '.join(result.drift.untestable)}"
                if result.drift.untestable
                else ""
            )
        )
    console.print(
        f"Results: {result.output} (predictions/ and rejects/: Parquet parts; summary.json, "
        "drift.json/html)"
    )
    return 0


def run_pipeline(cfg: RootConfig, output_dir: Path, console: Console) -> int:
    """Validate, train, evaluate, gate, register, validate on a staging app, then alias."""
    from framework.shipping.pipeline import Pipeline

    return Pipeline(cfg, output_dir, console).run()


def run_init_ci(cfg: RootConfig, output_dir: Path, console: Console) -> int:
    """Write the CI/CD workflow for the user's repository (``.github/workflows/``)."""
    from framework.shipping.workflow import write_workflow

    path = write_workflow(cfg, Path.cwd())
    console.print(f"Wrote the CI/CD workflow {path}")
    console.print(
        "It needs the repository secrets it names in its header (the cluster's address, the "
        "image registry, the Kubernetes credentials).",
        soft_wrap=True,
    )
    return 0


TASKS: dict[str, Callable[[RootConfig, Path, Console], int]] = {
    "train": run_train,
    "registry": run_registry,
    "serve": run_serve,
    "build_serve_config": run_build_serve_config,
    "api_key": run_api_key,
    "monitor": run_monitor,
    "promote": run_promote,
    "rollback": run_rollback,
    "explain": run_explain,
    "card": run_card,
    "reproduce": run_reproduce,
    "update": run_update,
    "score": run_score,
    "pipeline": run_pipeline,
    "init_ci": run_init_ci,
}


def run_submitted(cfg: RootConfig, overrides: list[str], console: Console) -> int:
    """Run the task as a Ray Job on the cluster: logs stream here, its exit status is ours."""
    import sys

    from framework.jobs import follow, job_overrides, submission_address, submit

    address = submission_address(cfg.ray)
    job = submit(
        address,
        job_overrides(overrides, cfg.store.path),
        name=f"framework-{cfg.task}",
        python=cfg.ray.job_python,
        metadata={"task": cfg.task, "model": cfg.model_name},
        outputs=str(Path("outputs") / "jobs"),
    )
    import os

    auth = "RAY_AUTH_MODE=token " if os.environ.get("RAY_AUTH_MODE") == "token" else ""
    console.print(
        f"Submitted Ray Job {job.job_id} ({cfg.task}) to the cluster at {address}; the "
        f"dashboard's Jobs page and `{auth}ray job status {job.job_id} --address {address}` "
        "show it.",
        soft_wrap=True,
        markup=False,
    )
    try:
        code = follow(job, sys.stdout.write, cfg.ray.job_timeout_s)
    except KeyboardInterrupt:
        console.print(
            f"Stopped following; the job goes on (`ray job stop {job.job_id}` stops it).",
            markup=False,
        )
        return 130
    finally:
        sys.stdout.flush()
        job.cleanup()
    console.print(f"Ray Job {job.job_id} ended: {job.status()}, exit status {code}.")
    return code


def run(
    cfg: RootConfig, output_dir: Path, console: Console, overrides: list[str] | None = None
) -> int:
    """Run the task named in ``cfg`` (here, or as a Ray Job); return the exit status."""
    if cfg.ray.submit:
        return run_submitted(cfg, overrides or [], console)
    return TASKS[cfg.task](cfg, output_dir, console)
