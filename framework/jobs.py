"""Tasks as Ray Jobs: submitted through Ray's Job Submission API, with the project attached.

The job's ``runtime_env`` carries the project's code (``framework/``, ``plugins/``,
``hydra_plugins/``), ``conf/`` and ``experiments/`` as its working directory, so a node needs
only the installed dependencies. The registry path is made absolute: it must be one every
node reaches (a shared path), as the README's cluster section says.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from framework.config.ray import RayConfig
from framework.errors import ClusterError

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

#: What a job needs of the project; everything else (virtualenvs, registries, outputs) stays.
PROJECT_PARTS = ("framework", "plugins", "hydra_plugins", "conf", "experiments")
#: What a user's own project adds from the working directory (its config layers over ours).
USER_PARTS = ("conf", "experiments")
#: Exit status of a job that failed before its driver exited (runtime_env setup, stopped).
JOB_FAILED = 1


def project_root() -> Path:
    """The folder holding the ``framework`` package (its bundled config inside)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "framework" / "conf" / "config.yaml").is_file():
        raise ClusterError(
            f"no framework/conf/config.yaml in {root}: the installed package lacks its config",
            hint="reinstall the framework (`pip install .`, or `pip install -e .` in a checkout)",
        )
    return root


def stage_project(root: Path | None = None) -> Path:
    """A temporary folder holding only the project's parts, to upload as working_dir."""
    root = root or project_root()
    staged = Path(tempfile.mkdtemp(prefix="framework-job-"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    for part in PROJECT_PARTS:
        if (root / part).exists():
            shutil.copytree(root / part, staged / part, ignore=ignore)
    here = Path.cwd().resolve()
    if here != root.resolve():  # a project of one's own beside an installed framework
        for part in USER_PARTS:
            if (here / part).is_dir():
                shutil.copytree(here / part, staged / part, ignore=ignore, dirs_exist_ok=True)
    return staged


def runtime_env(staged: Path) -> dict[str, object]:
    return {
        "working_dir": str(staged),
        "env_vars": {"RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"},
    }


def entrypoint(overrides: Iterable[str], python: str | None = None) -> str:
    """The shell command the job runs: ``python -m framework`` with the overrides."""
    args = [python or sys.executable, "-m", "framework", *overrides]
    return shlex.join(args)


def job_overrides(overrides: Iterable[str], store_path: str) -> list[str]:
    """The command's overrides for the job: no resubmission, the registry path absolute."""
    kept = [
        o
        for o in overrides
        if o.split("=", 1)[0].lstrip("+~") not in ("ray.submit", "store.path", "ray.address")
    ]
    return [*kept, "ray.submit=false", f"store.path={os.path.abspath(store_path)}"]


def submission_address(config: RayConfig) -> str:
    """Where jobs go: the dashboard URL (Ray's Job API) of the cluster a run would join."""
    from framework.cluster import dashboard_of, find_cluster

    found = find_cluster(config)  # ray.address or RAY_ADDRESS may name the dashboard itself
    if found is None:
        raise ClusterError(
            "ray.submit needs a running Ray cluster, and none was found",
            path="ray.submit",
            hint="start one with `ray start --head --port 6380` (6379 is often Redis) or "
            "`python -m framework task=serve`, or name it with RAY_ADDRESS or ray.address",
        )
    if found[0].startswith(("http://", "https://")):
        return found[0]
    return dashboard_of(found[0])


@dataclass
class SubmittedJob:
    """A job on the cluster: its id, where it was sent, the client that sent it, and the
    staged project folder to remove once it ended (None for a job followed again)."""

    job_id: str
    address: str
    client: JobSubmissionClient
    staged: Path | None = None

    def status(self) -> str:
        return str(self.client.get_job_status(self.job_id).value)

    def exit_status(self) -> int:
        """The driver's exit status once the job ended (1 when it never started)."""
        info = self.client.get_job_info(self.job_id)
        code = getattr(info, "driver_exit_code", None)
        if code is not None:
            return int(code)
        return 0 if str(info.status.value) == "SUCCEEDED" else JOB_FAILED

    def stop(self) -> None:
        self.client.stop_job(self.job_id)

    def cleanup(self) -> None:
        if self.staged is not None:
            shutil.rmtree(self.staged, ignore_errors=True)


def submit(
    address: str,
    overrides: list[str],
    *,
    name: str,
    python: str | None = None,
    metadata: dict[str, str] | None = None,
    outputs: str | None = None,
) -> SubmittedJob:
    """Submit ``python -m framework OVERRIDES`` as a Ray Job; return at once.

    ``outputs``: a folder every node reaches; the run's reports go to ``outputs/<job id>``
    (by default they stay in the job's working directory on the node that ran it).
    """
    from ray.job_submission import JobSubmissionClient

    try:
        client = JobSubmissionClient(address)
    except Exception as exc:
        raise ClusterError(
            f"the Ray Job API of the cluster at {address} did not answer: {exc}",
            hint="the cluster's head must run the Ray dashboard (ray.include_dashboard=true)",
        ) from None
    staged = stage_project()
    job_id = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(3).hex()}"
    if outputs is not None:
        overrides = [*overrides, f"hydra.run.dir={os.path.abspath(outputs)}/{job_id}"]
    try:
        client.submit_job(
            entrypoint=entrypoint(overrides, python),
            submission_id=job_id,
            runtime_env=runtime_env(staged),
            metadata={"framework": "1", **(metadata or {})},
        )
    except Exception as exc:
        shutil.rmtree(staged, ignore_errors=True)
        raise ClusterError(f"Ray did not take the job: {exc}") from None
    return SubmittedJob(job_id=job_id, address=address, client=client, staged=staged)


def follow(job: SubmittedJob, write: Callable[[str], object], timeout_s: float) -> int:
    """Stream the job's logs through ``write`` until it ends; return its exit status."""

    async def tail() -> None:
        async for lines in job.client.tail_job_logs(job.job_id):
            write(lines)

    try:
        asyncio.run(asyncio.wait_for(tail(), timeout_s))
    except TimeoutError:
        job.stop()
        write(f"\njob {job.job_id} ran past ray.job_timeout_s={timeout_s:g}; stopped\n")
    deadline = time.time() + 30
    while job.status() not in ("SUCCEEDED", "FAILED", "STOPPED") and time.time() < deadline:
        time.sleep(0.2)
    return job.exit_status()
