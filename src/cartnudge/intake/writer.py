"""The ingest writer: group commit for webhook deliveries.

``serve`` runs it in the ingest writer process, fed over a socket (``remote.py``); an app
built without that socket (tests, embedding) runs it as a thread of its own. Requests hand
it a verified delivery and wait; it takes every delivery queued at that moment (up to a
batch limit), applies them all in one transaction, commits, and only then releases the
waiting requests. One commit (one fsync) then covers many acknowledgements, which is what
lets a small machine keep up with a flash sale while never answering 2xx before the data is
on disk.

If a batch fails, it is rolled back and replayed one delivery per transaction, so one bad
delivery cannot take its neighbours down; one that still fails is kept as a dead letter.
"""

from __future__ import annotations

import asyncio
import contextlib
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


def _is_dropped(exc: BaseException) -> bool:
    """The connection was dead (the server restarted, a proxy closed it): the pool has
    discarded it, and the batch can be tried again on a new one. Nothing was committed,
    or, if the commit itself was cut off, the inbox answers the retry as a replay."""
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _is_unavailable(exc: BaseException) -> bool:
    if _is_dropped(exc):
        return True
    if not isinstance(exc, OperationalError):
        return False
    if "sqlite" in type(exc.orig).__module__:
        message = str(exc.orig).lower()
        return any(word in message for word in _SQLITE_TRANSIENT)
    return True


# Who waits for a delivery: a thread (a concurrent future) or a coroutine on an event
# loop (that loop and an asyncio future, resolved from the loop's own thread).
Waiter = Future[Outcome] | tuple[asyncio.AbstractEventLoop, "asyncio.Future[Outcome]"]
Result = Outcome | BaseException


class IngestWriter:
    def __init__(self, engine: Engine, clock: Clock, *, batch_max: int = 256) -> None:
        self.engine = engine
        self.clock = clock
        self.batch_max = batch_max
        self._queue: queue.SimpleQueue[tuple[Delivery, Waiter] | object] = queue.SimpleQueue()
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
        """Queue a delivery from any thread; the future resolves after its commit."""
        future: Future[Outcome] = Future()
        self._queue.put((delivery, future))
        return future

    async def deliver(self, delivery: Delivery) -> Outcome:
        """Queue a delivery from a coroutine and wait for its commit. A whole batch is
        handed back to the loop in one call, not one wake-up per delivery."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._queue.put((delivery, (loop, future)))
        return await future

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
            work = [b for b in batch if isinstance(b, tuple)]
            results = self.write_batch([delivery for delivery, _ in work])
            _settle([(waiter, result) for (_, waiter), result in zip(work, results, strict=True)])
            if stop:
                return

    def write_batch(self, deliveries: list[Delivery]) -> list[Result]:
        """Commit a batch in this thread; a result (or a StorageUnavailable) per delivery."""
        self.batches += 1
        self.deliveries += len(deliveries)
        try:
            return list(self._apply_with_retries(deliveries))
        except Exception as exc:
            if _is_unavailable(exc):
                log.warning("database unavailable for a batch of %d: %s", len(deliveries), exc)
                return [StorageUnavailable(str(exc)) for _ in deliveries]
            log.exception("batch of %d failed; applying one by one", len(deliveries))
            return [self._write_one(delivery) for delivery in deliveries]

    def _apply_with_retries(self, deliveries: list[Delivery]) -> list[Outcome]:
        """One transaction for the batch, tried again when another writer raced it."""
        for attempt in range(1, RACE_RETRIES + 1):
            try:
                with writing(self.engine, "ingest") as conn:
                    return ingest_batch(conn, deliveries, self.clock())
            except Exception as exc:
                if attempt == RACE_RETRIES or not (_is_race(exc) or _is_dropped(exc)):
                    raise
                why = "its connection was dead" if _is_dropped(exc) else "it raced another writer"
                log.info("batch retried: %s (%s)", why, type(exc).__name__)
        raise AssertionError("unreachable")

    def _write_one(self, delivery: Delivery) -> Result:
        try:
            [outcome] = self._apply_with_retries([delivery])
        except Exception as exc:
            if _is_unavailable(exc):
                return StorageUnavailable(str(exc))
            log.exception(
                "delivery %s/%s failed; kept as a dead letter",
                delivery.source,
                delivery.external_id,
            )
            try:
                with writing(self.engine, "ingest") as conn:
                    return record_failure(conn, delivery, type(exc).__name__)
            except Exception as second:
                return StorageUnavailable(str(second))
        return outcome


def _settle(settled: list[tuple[Waiter, Result]]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Outcome], Result]]] = {}
    for waiter, result in settled:
        if isinstance(waiter, Future):
            if isinstance(result, BaseException):
                waiter.set_exception(result)
            else:
                waiter.set_result(result)
        else:
            loop, future = waiter
            by_loop.setdefault(loop, []).append((future, result))
    for loop, items in by_loop.items():
        # A closed loop has nobody waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve, items)


def _resolve(items: list[tuple[asyncio.Future[Outcome], Result]]) -> None:
    for future, result in items:
        if future.done():  # the request went away (client disconnected)
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
