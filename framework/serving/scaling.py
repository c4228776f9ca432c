"""Ray Serve autoscaling policy of the queue consumers: replicas follow the backlog.

Each consumer reports the stream's backlog (``record_autoscaling_stats``: messages waiting
or being worked on); this policy asks for ``ceil(backlog / target_backlog)`` consumers. Ray
applies ``min_replicas``/``max_replicas`` and the up/down delays around it. Ray pickles this
module by value into its controller: of the framework it takes only a string, from
``names`` (which imports nothing).
"""

from __future__ import annotations

import math
from typing import Any

from framework.serving.names import BACKLOG


class BacklogPolicy:
    """``policy_function`` of the consumers' ``autoscaling_config.policy``."""

    def __init__(self, target_backlog: float = 256.0):
        self.target = max(float(target_backlog), 1.0)

    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        reported = (ctx.aggregated_metrics or {}).get(BACKLOG) or {}
        backlog = max(reported.values(), default=0.0)
        wanted = max(1, math.ceil(backlog / self.target))
        return wanted, {"backlog": backlog}
