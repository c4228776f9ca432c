"""One local Ray cluster for the whole integration session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        namespace="framework-tests",
        log_to_driver=False,
        configure_logging=False,
    )
    yield
    ray.shutdown()
