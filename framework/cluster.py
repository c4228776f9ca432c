"""Start or join Ray as declared in the ``ray/`` group."""

from __future__ import annotations

import logging
import os

from framework.config.ray import RayConfig

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _single_machine() -> None:
    """Keep a local instance on loopback: every port Ray opens, its metrics endpoint too.

    Ray replaces a loopback node address by the machine's routable one unless it runs as a
    single-machine instance, which its ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` switch selects
    (read at import, so it is set on the imported constant as well).
    """
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def ensure_ray(config: RayConfig) -> str | None:
    """Start a local Ray instance or join a cluster (once); return the dashboard URL if any."""
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        kwargs: dict[str, object] = {
            "namespace": config.namespace,
            "log_to_driver": config.log_to_driver,
            "logging_level": logging.WARNING,
            "configure_logging": True,
        }
        if config.address is None:
            if config.node_ip_address in LOOPBACK:
                _single_machine()
            else:
                kwargs["_node_ip_address"] = config.node_ip_address
            kwargs.update(
                num_cpus=config.num_cpus,
                include_dashboard=config.include_dashboard,
                dashboard_host=config.dashboard_host,
                dashboard_port=config.dashboard_port,
            )
            if config.metrics_export_port:
                kwargs["_metrics_export_port"] = config.metrics_export_port
            if config.object_store_memory_mb:
                kwargs["object_store_memory"] = config.object_store_memory_mb * 1024 * 1024
        else:
            kwargs["address"] = config.address
        context = ray.init(**kwargs)
        url = getattr(context, "dashboard_url", None)
        return f"http://{url}" if url and not str(url).startswith("http") else url
    return None


def metrics_url() -> str | None:
    """The Prometheus endpoint of this node's Ray metrics (every framework metric is there)."""
    import ray

    for node in ray.nodes():
        if node.get("Alive") and node.get("MetricsExportPort"):
            host = node.get("NodeManagerAddress", "127.0.0.1")
            return f"http://{host}:{node['MetricsExportPort']}/metrics"
    return None
