"""The loops behind the web app: the waiter and the sender, one pass after another, and
the privacy run, the tally of Today's closed days and the nightly sheets, each when
it is due.

``cartnudge serve`` runs them in a process of their own next to the web app (``main``
below, see ``cartnudge.children``); ``cartnudge worker`` runs only them, as many
processes as needed on PostgreSQL; ``cartnudge tick`` runs one pass.
Both stages find their work in the database (timers and the outbox), so a loop holds
nothing in memory that a restart would lose.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from cartnudge.clock import system_clock
from cartnudge.config import Settings
from cartnudge.db.session import writing
from cartnudge.db.turns import turn_size_for
from cartnudge.delivery.sender import Links, Providers, send_due
from cartnudge.export.nightly import NIGHTLY_INTERVAL_S, NightlyConfig, run_nightly
from cartnudge.measurement.heartbeat import BEAT_INTERVAL_S, beat, worker_name
from cartnudge.measurement.metrics import LOOPS_PASS
from cartnudge.measurement.tally import FULL_TALLY_INTERVAL_S, TALLY_INTERVAL_S, tally_shops
from cartnudge.privacy.worker import PRIVACY_INTERVAL_S, files_of, run_privacy
from cartnudge.timing.service import move_timers
from cartnudge.timing.waiter import wake_due

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0  # how soon a due cart or send is acted on when the loops are idle
ERROR_BACKOFF_S = 5.0  # after an unexpected error (the database away), before trying again


@dataclass
class Every:
    """A job's schedule: due at once, then every ``interval_s`` (monotonic seconds)."""

    interval_s: float
    next_at: float = 0.0

    def due(self, now: float) -> bool:
        """Whether the job is due at ``now``; if so, its next time is set from now."""
        if now < self.next_at:
            return False
        self.next_at = now + self.interval_s
        return True


class Loops:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        clock: Callable[[], datetime] = system_clock,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.monotonic = monotonic  # what schedules the privacy run and the tally
        self.providers = Providers(settings.resolved_outbox_dir)
        self.links = Links(settings.public_url, settings.signing_key)
        self.privacy_files = files_of(settings)
        # Each loop keeps what it learnt of its turn's size from one pass to the next.
        self.waiter_turns = turn_size_for(engine)
        self.sender_turns = turn_size_for(engine)
        self.nightly = NightlyConfig.of(settings)
        # The jobs beside the two loops, each first run at once.
        self._privacy = Every(PRIVACY_INTERVAL_S)
        self._nightly = Every(NIGHTLY_INTERVAL_S)
        self._tally = Every(TALLY_INTERVAL_S)
        self._full_tally = Every(FULL_TALLY_INTERVAL_S)  # every closed day tallied again
        self._beat = Every(BEAT_INTERVAL_S)
        self.worker = worker_name()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> dict[str, Any]:
        """Timers left by a rules change, one waiter pass, then one sender pass, as of the
        clock's now."""
        started = time.perf_counter()
        timers = move_timers(self.engine)
        waiter = wake_due(self.engine, self.clock(), turns=self.waiter_turns).as_dict()
        sender = send_due(
            self.engine, self.clock, self.providers, self.links, turns=self.sender_turns
        ).as_dict()
        LOOPS_PASS.observe(time.perf_counter() - started)
        return {"timers": timers, "waiter": waiter, "sender": sender}

    def run_privacy_if_due(self) -> None:
        """Answer data requests and apply retention, every ``PRIVACY_INTERVAL_S``."""
        if self._privacy.due(self.monotonic()):
            run_privacy(self.engine, self.clock(), self.privacy_files)

    def run_nightly_if_due(self) -> None:
        """Write the nightly sheets that are due, every ``NIGHTLY_INTERVAL_S``."""
        if self._nightly.due(self.monotonic()):
            run_nightly(self.engine, self.clock(), self.nightly)

    def run_tally_if_due(self) -> None:
        """Tally Today's closed days: the missing and the last two every
        ``TALLY_INTERVAL_S``, all of the last month every ``FULL_TALLY_INTERVAL_S``."""
        now = self.monotonic()
        if self._tally.due(now):
            tally_shops(self.engine, self.clock(), everything=self._full_tally.due(now))

    def beat_if_due(self) -> None:
        """Say that the loops are running (read by /readyz), every ``BEAT_INTERVAL_S``,
        after a pass that went through."""
        if self._beat.due(self.monotonic()):
            with writing(self.engine, "heartbeat") as conn:
                beat(conn, self.worker, self.clock())

    def run_jobs_if_due(self) -> None:
        """The jobs beside the loops, each on its own: one that fails is logged under its
        name and tried at its next time, and keeps neither the others nor the reminders
        waiting."""
        for name, job in (
            ("privacy run", self.run_privacy_if_due),
            ("tally of closed days", self.run_tally_if_due),
            ("nightly sheets", self.run_nightly_if_due),
        ):
            try:
                job()
            except Exception:
                log.exception("%s failed; tried again at its next time", name)

    def run(self) -> None:
        """Pass after pass until ``stop``; an error is logged and retried, never fatal."""
        try:
            while not self._stop.is_set():
                try:
                    self.run_once()
                    self.beat_if_due()
                    self.run_jobs_if_due()
                except Exception:
                    log.exception("waiter/sender pass failed; trying again shortly")
                    self._stop.wait(ERROR_BACKOFF_S)
                else:
                    self._stop.wait(POLL_INTERVAL_S)
        finally:
            self.providers.close()

    def stopped(self, wait_s: float = 0.0) -> bool:
        """Whether ``stop`` was called, waiting up to ``wait_s`` for it."""
        return self._stop.wait(wait_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="cartnudge-loops", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the pass in progress (its emails are recorded) and stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None


def main(argv: list[str] | None = None) -> None:
    """``python -m cartnudge.worker --parent PID``: the loops as ``serve``'s child, until
    SIGTERM (the pass in progress is finished) or until serve is gone."""
    import argparse
    import signal

    from sqlalchemy import Engine

    from cartnudge.children import PARENT_CHECK_S, handed_down, parent_gone
    from cartnudge.db.engine import make_engine
    from cartnudge.logs import configure_logging

    parser = argparse.ArgumentParser(description="cartnudge loops (started by serve)")
    parser.add_argument("--parent", required=True, type=int, help="exit when this pid is gone")
    args = parser.parse_args(argv)
    settings = handed_down("settings", Settings, Settings)
    configure_logging(settings.log_level)  # JSON lines on the stderr it shares with serve
    engine = handed_down("engine", Engine, lambda: make_engine(settings.resolved_database_url))
    loops = Loops(engine, settings)
    signal.signal(signal.SIGTERM, lambda *_: loops.stop(timeout_s=0))
    # Ctrl-C reaches the whole process group; serve decides when the loops stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch_parent() -> None:
        while not loops.stopped(PARENT_CHECK_S):
            if parent_gone(args.parent):
                loops.stop(timeout_s=0)

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    try:
        loops.run()
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
