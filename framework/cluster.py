"""Join the Ray cluster that is running, or start one: every command is a citizen of one cluster.

``ray.address: null`` (the default) joins, in this order, the cluster named by
``RAY_ADDRESS``, or the one Ray recorded on this machine (``ray start --head`` writes it, and
so does a ``task=serve`` that started its own instance), and starts a local instance only
when there is none. A busy dashboard or metrics port never fails a start: a free one is
taken and printed.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from framework.config.ray import RayConfig
from framework.errors import ClusterError

if TYPE_CHECKING:
    from rich.console import Console

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class RayConnection:
    """How this process reached Ray: joined or started, where, and what it has."""

    joined: bool
    address: str
    found_by: str
    cpus: float
    dashboard_url: str | None = None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        cpus = f"{self.cpus:g} CPU{'s' if self.cpus != 1 else ''}"
        if self.joined:
            return f"joined the running Ray cluster at {self.address} ({self.found_by}; {cpus})"
        return f"started a local Ray instance at {self.address} ({cpus})"


#: The connection this process made (None before ``ensure_ray``, or when Ray was started by
#: the caller, as a test session does).
connection: RayConnection | None = None


def _single_machine() -> None:
    """Keep a local instance on loopback: every port Ray opens, its metrics endpoint too.

    Ray replaces a loopback node address by the machine's routable one unless it runs as a
    single-machine instance, which its ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` switch selects
    (read at import, so it is set on the imported constant as well).
    """
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def _token_if_available() -> None:
    """Use this machine's Ray cluster token (``~/.ray/auth_token``) to join, as Ray does for a
    cluster it finds by itself; an explicit ``RAY_AUTH_MODE`` wins."""
    from ray._private.authentication.authentication_token_setup import (
        maybe_enable_token_auth_if_token_available,
    )

    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def address_file() -> str:
    """Ray's record of the cluster running on this machine (``/tmp/ray/ray_current_cluster``)."""
    from ray._private.utils import get_ray_address_file

    return str(get_ray_address_file(None))


def reachable(address: str, timeout_s: float = 0.5) -> bool:
    """Whether something answers on a ``host:port`` GCS address."""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return False
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            return True
    except OSError:
        return False


def find_cluster(config: RayConfig) -> tuple[str, str] | None:
    """``(address, how it was found)`` of the cluster to join, or None to start one."""
    if config.address == "local":
        return None
    if config.address is not None:
        return config.address, "ray.address"
    env = os.environ.get("RAY_ADDRESS", "")
    if env == "local":
        return None
    if env:
        return env, "RAY_ADDRESS"
    path = address_file()
    try:
        with open(path) as handle:
            recorded = handle.read().strip()
    except OSError:
        return None
    if recorded and reachable(recorded):
        return recorded, f"recorded in {path}"
    return None


def port_free(host: str, port: int, reuse: bool = False) -> bool:
    """Whether ``host:port`` can be bound now (the check Ray's own start would fail on).

    ``reuse`` probes with ``SO_REUSEADDR``, as HAProxy binds, so that only a listener makes
    the port busy, not connections of a server stopped a moment ago (TIME_WAIT).
    """
    bind = _bind_host(host)
    with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET) as sock:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind, port))
        except OSError:
            return False
    return True


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _bind_host(host: str) -> str:
    return "0.0.0.0" if host in ("", "0.0.0.0") else host


def _free_or_other(host: str, port: int, what: str, taker: str, notes: list[str]) -> int:
    """``port`` when it can be bound, else a free one (and a note saying so)."""
    if port_free(host, port):
        return port
    other = free_port(host)
    notes.append(f"{what} port {port} is busy; {taker} port {other}")
    return other


def start_ports(config: RayConfig) -> tuple[dict[str, object], list[str]]:
    """``ray.init`` arguments for the ports of a new local instance; busy ones replaced."""
    kwargs: dict[str, object] = {"include_dashboard": config.include_dashboard}
    notes: list[str] = []
    if config.include_dashboard:
        host = _bind_host(config.dashboard_host)
        kwargs["dashboard_host"] = config.dashboard_host
        kwargs["dashboard_port"] = _free_or_other(
            host, config.dashboard_port, "dashboard", "the dashboard takes", notes
        )
    if config.metrics_export_port:
        host = _bind_host(config.node_ip_address)
        port = _free_or_other(
            host, config.metrics_export_port, "metrics", "Ray's metrics take", notes
        )
        kwargs["_metrics_export_port"] = port
    return kwargs, notes


_MISMATCH = re.compile(
    r"started with:\s*Ray: (?P<cluster_ray>\S+)\s*Python: (?P<cluster_py>\S+).*?"
    r"started with:\s*Ray: (?P<ray>\S+)\s*Python: (?P<py>\S+)",
    re.S,
)


def version_mismatch(address: str, message: str) -> ClusterError | None:
    """A clear error for Ray's version check, naming both sides' Ray and Python."""
    found = _MISMATCH.search(message)
    if "Version mismatch" not in message or found is None:
        return None
    return ClusterError(
        f"cannot join the Ray cluster at {address}: it runs Ray {found['cluster_ray']} on "
        f"Python {found['cluster_py']}, this machine has Ray {found['ray']} on Python "
        f"{found['py']}",
        hint="install the same Ray and Python versions here as on the cluster, or run with "
        "ray.address=local for a private instance",
    )


#: What Ray says when a port it was given was taken between our check and its bind.
_BUSY = ("address already in use", "already occupied", "Failed to start the dashboard")


def _init(ray: Any, kwargs: dict[str, object], local: RayConfig | None, notes: list[str]) -> Any:
    """``ray.init``; a local start whose port another process took meanwhile (two commands
    starting Ray at the same moment) tries again on ports that are free now."""
    for attempt in range(3):
        try:
            return ray.init(**kwargs)
        except Exception as exc:
            busy = any(text in str(exc) for text in _BUSY)
            if local is None or not busy or attempt == 2:
                if isinstance(exc, RuntimeError | ConnectionError | ValueError):
                    raise
                raise RuntimeError(str(exc).strip().splitlines()[-1][:500]) from exc
            ray.shutdown()
            ports, more = start_ports(local)
            kwargs.update(ports)
            notes.extend(more)
            notes.append("a port was taken while Ray started; started again on free ones")
    raise AssertionError("unreachable")


def ensure_ray(config: RayConfig) -> RayConnection | None:
    """Join the running cluster or start a local instance (once); None if Ray was up already."""
    import ray

    global connection
    if ray.is_initialized():
        return None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, object] = {
        "namespace": config.namespace,
        "log_to_driver": config.log_to_driver,
        "logging_level": logging.WARNING,
        "configure_logging": True,
    }
    found = find_cluster(config)
    notes: list[str] = []
    if found is None:
        kwargs["address"] = "local"
        if config.node_ip_address in LOOPBACK:
            _single_machine()
        else:
            kwargs["_node_ip_address"] = config.node_ip_address
        ports, notes = start_ports(config)
        kwargs.update(ports, num_cpus=config.num_cpus)
        if config.object_store_memory_mb:
            kwargs["object_store_memory"] = config.object_store_memory_mb * 1024 * 1024
    else:
        address, how = found
        # Ray's own lookup of the recorded cluster ("auto") also picks up this machine's
        # cluster token; an explicit address gets it here the same way.
        kwargs["address"] = "auto" if how.startswith("recorded") else address
        if how != "ray.address" or address != "auto":
            _token_if_available()
        if address.rpartition(":")[0] in LOOPBACK:  # a loopback instance: stay on loopback
            _single_machine()
        if how == "ray.address" and address == "auto":
            how = "ray.address=auto"
    try:
        context = _init(ray, kwargs, config if found is None else None, notes)
    except (RuntimeError, ConnectionError, ValueError) as exc:
        target = found[0] if found else "a local instance"
        mismatch = version_mismatch(target, str(exc))
        if mismatch is not None:
            raise mismatch from None
        if found is None:
            raise ClusterError(f"could not start a local Ray instance: {exc}") from None
        raise ClusterError(
            f"could not join the Ray cluster at {found[0]} ({found[1]}): {exc}",
            hint="check the address, or run with ray.address=local for a private instance",
        ) from None
    url = getattr(context, "dashboard_url", None) or None
    if url and not str(url).startswith("http"):
        url = f"http://{url}"
    cpus = float(ray.cluster_resources().get("CPU", 0))
    runtime = ray.get_runtime_context()
    address = runtime.gcs_address
    if found is not None and config.num_cpus is not None and config.num_cpus != cpus:
        notes.append(f"ray.num_cpus={config.num_cpus} applies only to an instance started here")
    connection = RayConnection(
        joined=found is not None,
        address=address,
        found_by=found[1] if found else "",
        cpus=cpus,
        dashboard_url=url,
        notes=notes,
    )
    return connection


def announce(console: Console, conn: RayConnection | None) -> None:
    """Print how Ray was reached, any replaced port, and the dashboard."""
    if conn is None:
        return
    show = console.print
    show(f"  Ray: {conn.describe()}", markup=False, soft_wrap=True)
    for note in conn.notes:
        show(f"  note: {note}", markup=False, soft_wrap=True)
    if conn.dashboard_url:
        show(f"  Ray dashboard: {conn.dashboard_url}", markup=False)


def dashboard_of(address: str) -> str:
    """The dashboard URL (Ray's Job API) of the cluster at a GCS ``host:port`` or ``auto``."""
    from ray.dashboard.utils import get_address_for_submission_client

    if address.rpartition(":")[0] in LOOPBACK:
        _single_machine()
    _token_if_available()
    try:
        return str(get_address_for_submission_client(address))
    except Exception as exc:
        raise ClusterError(
            f"could not find the dashboard of the Ray cluster at {address}: {exc}",
            hint="Ray Jobs need the dashboard on the head node (ray.include_dashboard=true)",
        ) from None


def record_address(address: str) -> str | None:
    """Write Ray's address file so that other commands (and Ray's CLI) join this instance.

    Returns the address it replaced, if any, for ``forget_address``.
    """
    from ray._private.utils import read_ray_address, write_ray_address

    previous = read_ray_address(None)
    write_ray_address(address, None)
    return previous


def forget_address(address: str) -> None:
    """Remove Ray's address file if it still names ``address`` (the instance is stopping)."""
    path = address_file()
    try:
        with open(path) as handle:
            if handle.read().strip() != address:
                return
        os.unlink(path)
    except OSError:
        pass


def metrics_url() -> str | None:
    """The Prometheus endpoint of this node's Ray metrics (every framework metric is there)."""
    import ray

    for node in ray.nodes():
        if node.get("Alive") and node.get("MetricsExportPort"):
            host = node.get("NodeManagerAddress", "127.0.0.1")
            return f"http://{host}:{node['MetricsExportPort']}/metrics"
    return None


def _holders() -> str:
    """Who reserves the cluster's CPUs: live actors by class, with their CPUs (best effort)."""
    try:
        from ray.util.state import list_actors

        actors = list_actors(filters=[("state", "=", "ALIVE")], limit=1000, timeout=10, detail=True)
    except Exception:  # the state API is a diagnosis here, never a reason to fail
        return ""
    held: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for actor in actors:
        cpus = float((actor.required_resources or {}).get("CPU", 0.0))
        if cpus > 0:
            name = str(actor.class_name).split(":")[-1]
            held[name] += cpus
            count[name] += 1
    return ", ".join(f"{count[name]} {name} ({cpus:g} CPU)" for name, cpus in held.most_common(5))


def wait_for_cpus(
    cpus: float, *, what: str, path: str, wait_s: float | None, console: Console
) -> None:
    """Return once the joined cluster has ``cpus`` CPUs free for ``what``.

    Ray would queue the task silently until then, for ever when serving replicas hold the
    CPUs; this says so at once and fails after ``wait_s`` (None: waits as long as it takes).
    """
    import ray

    total = float(ray.cluster_resources().get("CPU", 0.0))
    deadline = None if wait_s is None else time.monotonic() + wait_s
    said = False
    while True:
        have = float(ray.available_resources().get("CPU", 0.0))
        if have + 1e-9 >= cpus:
            return
        if not said:
            limit = "as long as it takes" if wait_s is None else f"up to {wait_s:g} s"
            console.print(
                f"note: {what} reserves {cpus:g} CPU ({path}) and the cluster has {have:g} of "
                f"{total:g} free; waiting {limit} (ray.resource_wait_s)",
                soft_wrap=True,
                markup=False,
            )
            said = True
        if deadline is not None and time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    holders = _holders()
    raise ClusterError(
        f"{what} needs {cpus:g} CPU but the Ray cluster had only {have:g} of {total:g} free "
        f"for {wait_s:g} s" + (f"; held by {holders}" if holders else ""),
        path=path,
        hint=f"reserve less ({path}=...), free CPUs on the cluster (fewer serving replicas: "
        "serve.autoscaling.max_replicas, serve.num_cpus), add a node, run on a private "
        "instance with ray.address=local, or wait longer with ray.resource_wait_s",
    )
