"""Names the serving modules share, in a module that imports nothing.

``scaling.py`` is pickled by value into Ray's controller and ``deploy.py`` must not import the
consumer (and its broker client) at import time; both take the names from here.
"""

from __future__ import annotations

#: The Ray Serve deployment of the task-queue consumers.
CONSUMER = "QueueConsumer"
#: The custom autoscaling metric each consumer reports (messages waiting or in flight).
BACKLOG = "queue_backlog"
