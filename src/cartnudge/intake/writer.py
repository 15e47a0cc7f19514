"""The ingest writer: group commit for webhook deliveries.

Each web process has one writer thread. Requests hand it a verified delivery and wait;
it takes every delivery queued at that moment (up to a batch limit), applies them all in
one transaction, commits, and only then releases the waiting requests. One commit (one
fsync) then covers many acknowledgements, which is what lets a small machine keep up with
a flash sale while never answering 2xx before the data is on disk.

If a batch fails, it is rolled back and replayed one delivery per transaction, so one bad
delivery cannot take its neighbours down; one that still fails is kept as a dead letter.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from typing import Final

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from cartnudge.carts.service import ConcurrentChange
from cartnudge.clock import Clock
from cartnudge.db.session import writing
from cartnudge.intake.service import Delivery, Outcome, ingest_batch, record_failure

log = logging.getLogger(__name__)

_STOP: Final = object()


class StorageUnavailable(Exception):
    """The database cannot be reached; the sender should retry (HTTP 503)."""


# SQLite reports both outages and our own mistakes as OperationalError; only these mean
# "try again later". A missing column is a bug: the delivery becomes a dead letter.
_SQLITE_TRANSIENT = ("locked", "busy", "unable to open", "disk i/o", "readonly", "full")


RACE_RETRIES = 5
_PG_RACE_CODES = {"40001", "40P01"}  # serialization failure, deadlock detected


def _is_race(exc: BaseException) -> bool:
    if isinstance(exc, ConcurrentChange):
        return True
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _PG_RACE_CODES


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    if "sqlite" in type(exc.orig).__module__:
        message = str(exc.orig).lower()
        return any(word in message for word in _SQLITE_TRANSIENT)
    return True


class IngestWriter:
    def __init__(self, engine: Engine, clock: Clock, *, batch_max: int = 256) -> None:
        self.engine = engine
        self.clock = clock
        self.batch_max = batch_max
        self._queue: queue.SimpleQueue[tuple[Delivery, Future[Outcome]] | object] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self.batches = 0  # for the benchmark's report: deliveries per commit
        self.deliveries = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=30)
            self._thread = None

    def submit(self, delivery: Delivery) -> Future[Outcome]:
        future: Future[Outcome] = Future()
        self._queue.put((delivery, future))
        return future

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < self.batch_max:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._write([b for b in batch if isinstance(b, tuple)])
            if stop:
                return

    def _write(self, batch: list[tuple[Delivery, Future[Outcome]]]) -> None:
        self.batches += 1
        self.deliveries += len(batch)
        try:
            outcomes = self._apply_with_retries([delivery for delivery, _ in batch])
        except Exception as exc:
            if _is_unavailable(exc):
                log.warning("database unavailable for a batch of %d: %s", len(batch), exc)
                for _, future in batch:
                    future.set_exception(StorageUnavailable(str(exc)))
                return
            log.exception("batch of %d failed; applying one by one", len(batch))
            for delivery, future in batch:
                self._write_one(delivery, future)
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            future.set_result(outcome)

    def _apply_with_retries(self, deliveries: list[Delivery]) -> list[Outcome]:
        """One transaction for the batch, tried again when another writer raced it."""
        for attempt in range(1, RACE_RETRIES + 1):
            try:
                with writing(self.engine) as conn:
                    return ingest_batch(conn, deliveries, self.clock())
            except Exception as exc:
                if attempt == RACE_RETRIES or not _is_race(exc):
                    raise
                log.info("batch raced another writer (%s); retrying", type(exc).__name__)
        raise AssertionError("unreachable")

    def _write_one(self, delivery: Delivery, future: Future[Outcome]) -> None:
        try:
            [outcome] = self._apply_with_retries([delivery])
        except Exception as exc:
            if _is_unavailable(exc):
                future.set_exception(StorageUnavailable(str(exc)))
                return
            log.exception(
                "delivery %s/%s failed; kept as a dead letter",
                delivery.source,
                delivery.external_id,
            )
            try:
                with writing(self.engine) as conn:
                    outcome = record_failure(conn, delivery, type(exc).__name__)
            except Exception as second:
                future.set_exception(StorageUnavailable(str(second)))
                return
        future.set_result(outcome)
