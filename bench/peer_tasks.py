"""The Celery side of ``bench.peers``: the app and its one task.

A module of its own so that a real ``celery -A bench.peer_tasks worker`` subprocess can
import it. Configured from the environment, so the benchmark can point it at the Redis it
started (``PEERS_REDIS_URL``) and at its fire log (``PEERS_FIRE_LOG``, see
``bench.peers.record_fire``).

Everything else is Celery's default, on purpose: the question is what Celery does out of
the box with a million ETA tasks. In particular the Redis transport's ``visibility_timeout``
stays at kombu's 3,600 s.
"""

from __future__ import annotations

import os

from celery import Celery

from bench.peers import REDIS_URL_ENV, record_fire

app = Celery("peers", broker=os.environ.get(REDIS_URL_ENV, "redis://127.0.0.1:6379/0"))
app.conf.update(
    # No result backend: the fire log is the record of what ran, and storing a million
    # results would add to Redis's memory what the comparison is not about.
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
)


@app.task(name="peers.remind")
def remind(reminder: int) -> None:
    """What a reminder would do when it fires: here, only say that it ran."""
    record_fire(reminder)
