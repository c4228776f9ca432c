"""The Grafana dashboard of the serving metrics, generated from one panel table.

``python -m framework.monitoring.grafana > serve_configs/grafana_dashboard.json`` writes the
file kept in the repository (a unit test checks that it matches). Import it in Grafana
(Dashboards > New > Import) and pick the Prometheus data source that scrapes Ray's metrics
endpoint; every series is a Ray metric, so its name carries Ray's ``ray_`` prefix.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from framework.monitoring import metrics as m

PREDICT = 'route=~"predict|v2_infer|v2_infer_version"'

#: (title, panel type, unit, [(PromQL, legend)], description)
PANELS: list[tuple[str, str, str, list[tuple[str, str]], str]] = [
    (
        "Requests per second by version and status",
        "timeseries",
        "reqps",
        [
            (
                f"sum by (version, status) (rate({m.REQUESTS.prometheus}{{{PREDICT}}}[1m]))",
                "v{{version}} {{status}}",
            )
        ],
        "Prediction requests answered, by the model version that answered and HTTP status.",
    ),
    (
        "Latency p50 / p99 by version",
        "timeseries",
        "s",
        [
            (
                "histogram_quantile(0.5, sum by (le, version) "
                f"(rate({m.LATENCY.prometheus}_bucket{{{PREDICT}}}[5m])))",
                "p50 v{{version}}",
            ),
            (
                "histogram_quantile(0.99, sum by (le, version) "
                f"(rate({m.LATENCY.prometheus}_bucket{{{PREDICT}}}[5m])))",
                "p99 v{{version}}",
            ),
        ],
        "Time from request to response inside the replica.",
    ),
    (
        "Error ratio (5xx) by version",
        "timeseries",
        "percentunit",
        [
            (
                f"sum by (version) (rate({m.REQUESTS.prometheus}"
                f'{{{PREDICT}, status=~"5.."}}[5m])) / sum by (version) '
                f"(rate({m.REQUESTS.prometheus}{{{PREDICT}}}[5m]))",
                "v{{version}}",
            )
        ],
        "Share of prediction requests that failed inside the model.",
    ),
    (
        "Traffic share: declared and observed",
        "timeseries",
        "percentunit",
        [
            (
                f"max by (version, alias) ({m.TRAFFIC_SHARE.prometheus})",
                "declared {{alias}} v{{version}}",
            ),
            (
                f"sum by (version) (rate({m.REQUESTS.prometheus}{{{PREDICT}}}[1m])) / "
                f"ignoring(version) group_left sum(rate({m.REQUESTS.prometheus}"
                f"{{{PREDICT}}}[1m]))",
                "observed v{{version}}",
            ),
        ],
        "The rollout policy's declared weights against what the router did.",
    ),
    (
        "Rollout step of the challenger",
        "stat",
        "none",
        [(f"max({m.ROLLOUT_STEP.prometheus})", "step")],
        "Index into monitor.rollout.steps; -1 when there is no challenger.",
    ),
    (
        "Out-of-distribution rows by version",
        "timeseries",
        "short",
        [
            (
                f"sum by (version) (rate({m.OUT_OF_DISTRIBUTION.prometheus}[5m]))",
                "v{{version}}",
            )
        ],
        "Request rows per second the version's detector flagged (serve.ood: flag or reject).",
    ),
    (
        "Registry verified",
        "stat",
        "none",
        [(f"min({m.REGISTRY_VERIFIED.prometheus})", "verified")],
        "1: the served versions and the audit log verify; 0: /readyz answers 503.",
    ),
    (
        "Versions refused by verification",
        "timeseries",
        "short",
        [
            (
                f"sum by (version) (increase({m.VERIFICATION_FAILURES.prometheus}[5m]))",
                "v{{version}}",
            )
        ],
        "A version an alias moved to whose files, manifest or audit entry failed verification.",
    ),
    (
        "Live quality by version",
        "timeseries",
        "percentunit",
        [
            (
                f"max by (version, metric) ({m.LIVE_QUALITY.prometheus})",
                "{{metric}} v{{version}}",
            )
        ],
        "Accuracy and macro F1 (or MAE/RMSE) on labels sent to /v1/feedback; empty while a "
        "version has fewer than window.min_labels labels.",
    ),
    (
        "Labels in the quality window",
        "timeseries",
        "none",
        [(f"max by (version) ({m.LIVE_LABELS.prometheus})", "v{{version}}")],
        "How many labelled predictions each version's live quality rests on.",
    ),
    (
        "Live confusion matrix",
        "table",
        "none",
        [
            (
                f"max by (version, actual, predicted) ({m.LIVE_CONFUSION.prometheus})",
                "v{{version}} {{actual}} -> {{predicted}}",
            )
        ],
        "Rows of each true class predicted as each class, in the live window.",
    ),
    (
        "Predicted classes by version",
        "timeseries",
        "rps",
        [
            (
                f"sum by (version, class) (rate({m.PREDICTIONS.prometheus}[5m]))",
                "v{{version}} {{class}}",
            )
        ],
        "The prediction distribution; a shift here is often the first sign of drift.",
    ),
    (
        "Feature drift: PSI per feature",
        "bargauge",
        "none",
        [(f"max by (feature) ({m.DRIFT_PSI.prometheus})", "{{feature}}")],
        "Population stability index of the live window against the training reference.",
    ),
    (
        "Drifted features",
        "stat",
        "none",
        [(f"sum(max by (feature) ({m.DRIFTED.prometheus}))", "drifted")],
        "Features whose corrected test and PSI both passed the monitor/ thresholds.",
    ),
    (
        "Drift test p-value (corrected) per feature",
        "bargauge",
        "none",
        [(f"max by (feature) ({m.DRIFT_P.prometheus})", "{{feature}}")],
        "KS (numeric) or chi-square (categorical) p-value after the multiple-testing correction.",
    ),
    (
        "Imputed (missing) feature values",
        "timeseries",
        "rps",
        [
            (
                f"sum by (feature) (rate({m.IMPUTED.prometheus}[5m]))",
                "{{feature}}",
            )
        ],
        "Missing nullable features in requests, imputed with training statistics.",
    ),
    (
        "Feed age: seconds since last request and label",
        "timeseries",
        "s",
        [
            (f"max({m.REQUEST_FEED_AGE.prometheus})", "requests"),
            (f"max({m.LABEL_FEED_AGE.prometheus})", "labels"),
        ],
        "A request source or label feed that stops shows as a growing age.",
    ),
    (
        "Shadow agreement",
        "timeseries",
        "rps",
        [
            (
                f"sum by (version, outcome) (rate({m.SHADOW.prometheus}[5m]))",
                "shadow v{{version}} {{outcome}}",
            )
        ],
        "Rows the shadow version predicted, agreeing or not with the answer returned.",
    ),
    (
        "Rows per ONNX Runtime call",
        "timeseries",
        "none",
        [
            (
                "histogram_quantile(0.5, sum by (le) "
                f"(rate({m.BATCH_ROWS.prometheus}_bucket[5m])))",
                "p50",
            ),
            (
                "histogram_quantile(0.99, sum by (le) "
                f"(rate({m.BATCH_ROWS.prometheus}_bucket[5m])))",
                "p99",
            ),
        ],
        "Batch sizes after request batching.",
    ),
    (
        "Async queue: depth and oldest message",
        "timeseries",
        "none",
        [
            (f"max by (model) ({m.ASYNC_DEPTH.prometheus})", "depth {{model}}"),
            (f"max by (model) ({m.ASYNC_PENDING.prometheus})", "in flight {{model}}"),
            (f"max by (model) ({m.ASYNC_OLDEST.prometheus})", "oldest age (s) {{model}}"),
        ],
        "Messages in the task stream (waiting or being worked on), those delivered and not "
        "acknowledged yet, and the age of the oldest one. Every consumer reports the same "
        "figures, hence max.",
    ),
    (
        "Async tasks by outcome",
        "timeseries",
        "ops",
        [
            (
                f"sum by (outcome) (rate({m.ASYNC_TASKS.prometheus}[1m]))",
                "{{outcome}}",
            ),
            (
                f"sum by (outcome) (rate({m.ASYNC_ENQUEUED.prometheus}[1m]))",
                "enqueue {{outcome}}",
            ),
            (f"sum(rate({m.ASYNC_REDELIVERIES.prometheus}[1m]))", "redelivered"),
        ],
        "Messages enqueued through predict_async (accepted or refused), and consumed: done, "
        "retried, dead-lettered, or already answered (a redelivery).",
    ),
    (
        "Async end-to-end latency p50 / p99",
        "timeseries",
        "s",
        [
            (
                "histogram_quantile(0.5, sum by (le) "
                f"(rate({m.ASYNC_LATENCY.prometheus}_bucket[5m])))",
                "p50",
            ),
            (
                "histogram_quantile(0.99, sum by (le) "
                f"(rate({m.ASYNC_LATENCY.prometheus}_bucket[5m])))",
                "p99",
            ),
        ],
        "From the broker taking a message to its result being stored.",
    ),
    (
        "Async dead letters and broker reachability",
        "timeseries",
        "none",
        [
            (f"sum(increase({m.ASYNC_DEAD_LETTERED.prometheus}[5m]))", "dead-lettered (5m)"),
            (f"max({m.ASYNC_DEAD_ENTRIES.prometheus})", "dead-letter stream entries"),
            (f"min({m.ASYNC_BROKER_UP.prometheus})", "broker up (every consumer)"),
        ],
        "Messages that failed serve.async.max_deliveries times, and whether every consumer "
        "reaches the broker.",
    ),
]


def dashboard() -> dict[str, Any]:
    """The dashboard document (Grafana's JSON model, schema version 39)."""
    source = {"type": "prometheus", "uid": "${datasource}"}
    panels = []
    for index, (title, kind, unit, queries, description) in enumerate(PANELS):
        width = 12 if kind in ("timeseries", "table", "bargauge") else 6
        panels.append(
            {
                "id": index + 1,
                "type": kind,
                "title": title,
                "description": description,
                "datasource": source,
                "gridPos": {"h": 8, "w": width, "x": (index % 2) * 12, "y": (index // 2) * 8},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {},
                "targets": [
                    {
                        "refId": chr(65 + i),
                        "datasource": source,
                        "expr": expr,
                        "legendFormat": legend,
                    }
                    for i, (expr, legend) in enumerate(queries)
                ],
            }
        )
    return {
        "title": "Framework model serving",
        "uid": "framework-serving",
        "description": "Requests, latency, rollout, live quality and drift of models served by "
        "python -m framework task=serve (Ray metrics).",
        "tags": ["framework", "ray", "ml"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def main() -> None:
    sys.stdout.write(json.dumps(dashboard(), indent=2) + "\n")


if __name__ == "__main__":
    main()
