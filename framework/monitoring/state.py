"""The monitor's state on disk, so that a restarted monitor goes on where it stopped.

Rollout step, per-step counts, the drift window, the prediction-id map with its waiting
labels, live quality windows and traffic counts are written as one JSON document in the
registry folder (``<model>/monitor/<served alias>.json``), atomically, every
``monitor.state_every_s`` when something changed. JSON, not pickle: nothing executable is
ever loaded from the registry.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

from framework.monitoring.protocol import RolloutState
from framework.monitoring.windows import DriftWindow, LabelBook, StepCounts

VERSION = 1


def state_path(root: str | Path, model: str, served_alias: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in served_alias)
    return Path(root) / model / "monitor" / f"{safe}.json"


def write(path: Path, document: dict[str, Any]) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state-")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("version") != VERSION:
        return None
    return document


def _ints(mapping: dict[str, Any]) -> dict[int, Any]:
    return {int(k): v for k, v in mapping.items()}


# -- per part -------------------------------------------------------------------------------
def step_state(step: StepCounts) -> dict[str, Any]:
    return {
        "started": step.started,
        "requests": step.requests,
        "errors": step.errors,
        "latencies": {k: list(v) for k, v in step.latencies.items()},
        "pairs": {k: [list(p) for p in v] for k, v in step.pairs.items()},
    }


def restore_step(state: dict[str, Any]) -> StepCounts:
    return StepCounts(
        started=float(state["started"]),
        requests=_ints(state["requests"]),
        errors=_ints(state["errors"]),
        latencies={k: deque(v, maxlen=5000) for k, v in _ints(state["latencies"]).items()},
        pairs={k: [tuple(p) for p in v] for k, v in _ints(state["pairs"]).items()},
    )


def window_state(window: DriftWindow) -> dict[str, Any]:
    return {
        "columns": {k: list(v) for k, v in window.columns.items()},
        "predicted": list(window.predicted),
        "new_rows": window.new_rows,
    }


def restore_window(window: DriftWindow, state: dict[str, Any]) -> None:
    if set(state["columns"]) != set(window.columns):
        return  # another signature: the window starts empty
    for name, values in state["columns"].items():
        window.columns[name].extend(values)
    window.predicted.extend(state["predicted"])
    window.new_rows = int(state["new_rows"])


def labels_state(book: LabelBook) -> dict[str, Any]:
    return {
        "tracked": [
            [rid, v, labels, sorted(done)] for rid, (v, labels, done) in book.tracked.items()
        ],
        "pending": [[pid, value, since] for pid, (value, since) in book.pending.items()],
        "quality": {k: [list(p) for p in v] for k, v in book.quality.items()},
        "joined": book.joined,
        "dropped": book.dropped,
    }


def restore_labels(book: LabelBook, state: dict[str, Any]) -> None:
    book.tracked = OrderedDict(
        (rid, (int(v), list(labels), set(done))) for rid, v, labels, done in state["tracked"]
    )
    book.tracked_rows = sum(len(labels) for _, labels, _ in book.tracked.values())
    book.pending = OrderedDict(
        (pid, (value, float(since))) for pid, value, since in state["pending"]
    )
    book.quality = {
        k: deque((tuple(p) for p in v), maxlen=book.config.labels)
        for k, v in _ints(state["quality"]).items()
    }
    book.joined = int(state["joined"])
    book.dropped.update({k: int(v) for k, v in state["dropped"].items()})


def rollout_state(state: RolloutState) -> dict[str, Any]:
    return state.as_dict()


def restore_rollout(state: dict[str, Any]) -> RolloutState:
    return RolloutState(
        challenger=state["challenger"],
        weight=float(state["weight"]),
        step=state["step"],
        reason=str(state["reason"]),
    )
