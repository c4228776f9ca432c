"""Every metric the serving application exports, declared once.

Replicas and the monitor create their Ray metrics from ``METRICS``; the Grafana generator
reads the same names. Ray exports each under the ``ray_`` prefix on its Prometheus
endpoint; histograms are real Prometheus histograms (``# TYPE ... histogram``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["counter", "gauge", "histogram"]

#: Ray's prefix in front of every application metric on its Prometheus endpoint.
PROMETHEUS_PREFIX = "ray_"
#: Bucket bounds of the request latency histogram, in seconds.
LATENCY_BOUNDARIES = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]
#: Bucket bounds of the end-to-end latency of queued tasks, in seconds.
QUEUE_LATENCY_BOUNDARIES = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]
#: Bucket bounds of the batch size histogram, in rows.
ROW_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096]


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its name (without Ray's prefix), kind, meaning, labels and buckets."""

    name: str
    kind: Kind
    description: str
    tag_keys: tuple[str, ...]
    boundaries: tuple[float, ...] = ()
    #: Which deployment records it: the model replicas or the monitor.
    recorded_by: Literal["replica", "monitor", "consumer"] = "monitor"

    @property
    def prometheus(self) -> str:
        """The name of its series on Ray's Prometheus endpoint."""
        return PROMETHEUS_PREFIX + self.name

    def create(self) -> Any:
        """The Ray metric object (created in the process that records it)."""
        from ray.util.metrics import Counter, Gauge, Histogram

        if self.kind == "counter":
            return Counter(self.name, description=self.description, tag_keys=self.tag_keys)
        if self.kind == "gauge":
            return Gauge(self.name, description=self.description, tag_keys=self.tag_keys)
        return Histogram(
            self.name,
            description=self.description,
            boundaries=list(self.boundaries),
            tag_keys=self.tag_keys,
        )


def _spec(
    name: str,
    kind: Kind,
    description: str,
    *tags: str,
    boundaries: list[float] | None = None,
    replica: bool = False,
    consumer: bool = False,
) -> MetricSpec:
    return MetricSpec(
        name,
        kind,
        description,
        ("model", *tags),
        tuple(boundaries or ()),
        "consumer" if consumer else "replica" if replica else "monitor",
    )


REQUESTS = _spec(
    "framework_requests_total",
    "counter",
    "Requests by route, model version and HTTP status.",
    "route",
    "version",
    "status",
    replica=True,
)
LATENCY = _spec(
    "framework_request_duration_seconds",
    "histogram",
    "Time from request to response inside the replica.",
    "route",
    "version",
    boundaries=LATENCY_BOUNDARIES,
    replica=True,
)
BATCH_ROWS = _spec(
    "framework_batch_rows",
    "histogram",
    "Rows in one ONNX Runtime call (requests batched together).",
    boundaries=[float(b) for b in ROW_BOUNDARIES],
    replica=True,
)
PREDICTIONS = _spec(
    "framework_predictions_total",
    "counter",
    "Predicted rows by version and class.",
    "version",
    "class",
    replica=True,
)
PREDICTION_BINS = _spec(
    "framework_prediction_bin_total",
    "counter",
    "Predicted values (regression) by version, counted in the training target's quantile bins.",
    "version",
    "bin",
    replica=True,
)
IMPUTED = _spec(
    "framework_imputed_values_total",
    "counter",
    "Missing feature values in requests, imputed with training statistics.",
    "feature",
    replica=True,
)
SHADOW = _spec(
    "framework_shadow_predictions_total",
    "counter",
    "Rows the shadow version predicted, by agreement with the answer given.",
    "version",
    "outcome",
    replica=True,
)
OUT_OF_DISTRIBUTION = _spec(
    "framework_out_of_distribution_total",
    "counter",
    "Request rows the version's out-of-distribution detector flagged (serve.ood).",
    "version",
    replica=True,
)
RECORDS_DROPPED = _spec(
    "framework_monitor_records_dropped_total",
    "counter",
    "Request records the monitor could not take (it was unreachable).",
    replica=True,
)
LABELS_DROPPED = _spec(
    "framework_feedback_labels_dropped_total",
    "counter",
    "Labels dropped before meeting their prediction (pending cap, age, or a duplicate id).",
    "reason",
)
DRIFT_PSI = _spec(
    "framework_feature_drift_psi",
    "gauge",
    "Population stability index of a feature's live window vs reference.",
    "feature",
)
DRIFT_P = _spec(
    "framework_feature_drift_p_value",
    "gauge",
    "Corrected p-value of a feature's drift test.",
    "feature",
)
DRIFTED = _spec(
    "framework_feature_drifted",
    "gauge",
    "1 when a feature's live window drifted from the reference, else 0.",
    "feature",
)
WINDOW_ROWS = _spec("framework_drift_window_rows", "gauge", "Rows in the live drift window.")
LIVE_QUALITY = _spec(
    "framework_live_quality",
    "gauge",
    "Live quality of a version on labelled requests (NaN: too few labels).",
    "version",
    "metric",
)
LIVE_LABELS = _spec(
    "framework_live_labels", "gauge", "Labels in a version's live quality window.", "version"
)
LIVE_CONFUSION = _spec(
    "framework_live_confusion",
    "gauge",
    "Live confusion matrix cell: rows of true class predicted as class.",
    "version",
    "actual",
    "predicted",
)
TRAFFIC_SHARE = _spec(
    "framework_traffic_share_ratio",
    "gauge",
    "Declared traffic share of a version.",
    "version",
    "alias",
)
REQUEST_FEED_AGE = _spec(
    "framework_request_feed_age_seconds",
    "gauge",
    "Seconds since a replica last reported a request (a stopped feed).",
)
LABEL_FEED_AGE = _spec(
    "framework_label_feed_age_seconds",
    "gauge",
    "Seconds since the last label arrived on /v1/feedback.",
)
ROLLOUT_STEP = _spec(
    "framework_rollout_step",
    "gauge",
    "Index of the challenger's rollout step (-1: no challenger).",
)
VERIFICATION_FAILURES = _spec(
    "framework_verification_failures_total",
    "counter",
    "Times a version failed verification (files, manifest or audit log) and was not served.",
    "version",
)
REGISTRY_VERIFIED = _spec(
    "framework_registry_verified",
    "gauge",
    "1 when the served versions and the audit log verify, 0 when not (/readyz answers 503).",
)
ASYNC_ENQUEUED = _spec(
    "framework_async_enqueued_total",
    "counter",
    "predict_async requests: accepted (the broker holds them) or refused (broker away, full).",
    "outcome",
    replica=True,
)
ASYNC_DEPTH = _spec(
    "framework_async_queue_depth",
    "gauge",
    "Messages in the task stream: waiting or being worked on (every consumer reports it).",
    consumer=True,
)
ASYNC_PENDING = _spec(
    "framework_async_queue_pending",
    "gauge",
    "Messages delivered to a consumer and not acknowledged yet.",
    consumer=True,
)
ASYNC_OLDEST = _spec(
    "framework_async_oldest_message_age_seconds",
    "gauge",
    "Age of the oldest message still in the task stream (0: empty).",
    consumer=True,
)
ASYNC_DEAD_ENTRIES = _spec(
    "framework_async_dead_letter_entries",
    "gauge",
    "Entries in the dead-letter stream.",
    consumer=True,
)
ASYNC_DEAD_LETTERED = _spec(
    "framework_async_dead_lettered_total",
    "counter",
    "Messages moved to the dead-letter stream after serve.async.max_deliveries.",
    consumer=True,
)
ASYNC_REDELIVERIES = _spec(
    "framework_async_redeliveries_total",
    "counter",
    "Messages delivered again (a failed attempt, or a consumer that stopped holding them).",
    consumer=True,
)
ASYNC_TASKS = _spec(
    "framework_async_tasks_total",
    "counter",
    "Consumed messages by outcome: done, retried, dead_lettered, duplicate (already answered).",
    "outcome",
    consumer=True,
)
ASYNC_LATENCY = _spec(
    "framework_async_latency_seconds",
    "histogram",
    "End-to-end latency of a task: from the broker taking the message to its stored result.",
    boundaries=QUEUE_LATENCY_BOUNDARIES,
    consumer=True,
)
ASYNC_BROKER_UP = _spec(
    "framework_async_broker_up",
    "gauge",
    "1 while a consumer reaches the broker, 0 while it waits for it.",
    consumer=True,
)

METRICS: tuple[MetricSpec, ...] = (
    REQUESTS,
    LATENCY,
    BATCH_ROWS,
    PREDICTIONS,
    PREDICTION_BINS,
    IMPUTED,
    SHADOW,
    OUT_OF_DISTRIBUTION,
    RECORDS_DROPPED,
    LABELS_DROPPED,
    DRIFT_PSI,
    DRIFT_P,
    DRIFTED,
    WINDOW_ROWS,
    LIVE_QUALITY,
    LIVE_LABELS,
    LIVE_CONFUSION,
    TRAFFIC_SHARE,
    REQUEST_FEED_AGE,
    LABEL_FEED_AGE,
    ROLLOUT_STEP,
    VERIFICATION_FAILURES,
    REGISTRY_VERIFIED,
    ASYNC_ENQUEUED,
    ASYNC_DEPTH,
    ASYNC_PENDING,
    ASYNC_OLDEST,
    ASYNC_DEAD_ENTRIES,
    ASYNC_DEAD_LETTERED,
    ASYNC_REDELIVERIES,
    ASYNC_TASKS,
    ASYNC_LATENCY,
    ASYNC_BROKER_UP,
)


def recorded_by(deployment: str) -> dict[str, MetricSpec]:
    """The metrics one deployment records, by name."""
    return {spec.name: spec for spec in METRICS if spec.recorded_by == deployment}
