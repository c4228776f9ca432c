"""The routes of asynchronous inference: queue a prediction, read a task.

A mixin of ``Handlers``: ``predict_async`` checks the body by the same request rules as
predict, adds it to the task stream (``queue``) and answers 202 only once the broker holds
it; ``task_status`` reads the task's result or pending record. A broker that cannot be
reached, or a full queue, is 503 with Retry-After.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson

from framework.config.app import AppConfig
from framework.serving.codec import decode_records
from framework.serving.problems import HttpError, dumps
from framework.serving.queue import TASK_ID, BrokerUnavailable, QueueFull, TaskQueue

if TYPE_CHECKING:
    from framework.serving.handlers import Call, Reply  # Handlers subclasses this mixin

logger = logging.getLogger("ray.serve")


class TaskHandlers:
    """predict_async and task_status, over the replica's parts and its task queue."""

    serve: Any
    rules: Any
    recorder: Any
    model: str
    sticky: bytes
    queue: TaskQueue | None
    tasks_path: str

    def _queue_init(self, settings: AppConfig) -> None:
        queue = settings.serve.queue
        app = settings.serve.app_name or settings.model_name
        self.queue = TaskQueue(queue, app, settings.store_path) if queue.enabled else None
        prefix = settings.serve.route_prefix.rstrip("/")
        self.tasks_path = f"{prefix}/v1/tasks/"

    def _queue(self) -> TaskQueue:
        if self.queue is None:
            raise HttpError(
                409,
                "asynchronous inference is off for this application (serve.async.enabled=false)",
            )
        return self.queue

    def _broker_away(self, exc: Exception) -> HttpError:
        logger.warning("%s", exc)
        return HttpError(
            503,
            f"the task queue is not available: {exc}",
            headers={"Retry-After": str(self.serve.retry_after_s)},
        )

    async def predict_async(self, call: Call) -> Reply:
        """Check the body as predict does, queue it, and answer 202 once the broker has it."""
        from framework.serving.handlers import Reply

        self._named(call)  # type: ignore[attr-defined]
        queue = self._queue()
        _, rows = decode_records(self.rules, call.body, self.serve.max_rows_per_request)
        sticky = call.headers.get(self.sticky)
        try:
            task = await queue.enqueue(
                call.body,
                self.model,
                sticky.decode("latin-1") if sticky else None,
                self._correlation(call),  # type: ignore[attr-defined]
            )
        except (BrokerUnavailable, QueueFull) as exc:
            self.recorder.enqueued("refused")
            raise self._broker_away(exc) from None
        self.recorder.enqueued("accepted")
        where = self.tasks_path + task
        body = {"task": task, "status": "pending", "model": self.model, "rows": rows}
        return Reply(orjson.dumps({**body, "href": where}), 202, {"Location": where})

    async def task_status(self, call: Call) -> Reply:
        """pending, done (with the predict response) or failed; 404 when unknown."""
        from framework.serving.handlers import Reply

        queue = self._queue()
        task = call.params["id"]
        found = None
        if TASK_ID.fullmatch(task):
            try:
                found = await queue.status(task)
            except BrokerUnavailable as exc:
                raise self._broker_away(exc) from None
        if found is None:
            body = {
                "task": task[:64],
                "status": "unknown",
                "error": f"no task {task[:64]!r}: never queued here, or its result expired "
                f"(results are kept {self.serve.queue.result_ttl_s} s)",
            }
            return Reply(dumps(body), 404)
        reply = Reply(orjson.dumps(found))
        if found["status"] == "pending":
            reply.headers["Retry-After"] = "1"
        return reply
