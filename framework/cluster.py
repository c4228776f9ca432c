"""Start or join Ray as declared in the ``ray/`` group."""

from __future__ import annotations

import logging
import os

from framework.config.ray import RayConfig


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
            kwargs.update(
                num_cpus=config.num_cpus,
                include_dashboard=config.include_dashboard,
                dashboard_host=config.dashboard_host,
                dashboard_port=config.dashboard_port,
                _node_ip_address=config.node_ip_address,
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
