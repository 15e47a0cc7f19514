"""The ingest writer process: started, watched and stopped by ``cartnudge serve`` and ``web``.

A writer thread inside the web process shares the web process's GIL: on SQLite it also
waits its turn for the one write lock, on PostgreSQL for a round trip per statement, while
HTTP waits for it. So ``serve`` runs one writer process next to its web process(es): the
web side verifies and parses, the writer commits (see ``remote.py``), on a core of its own.
On PostgreSQL that took HTTP ingest from 793 to 1,126 events/s (bench/README.md, *Intake*).

The writer never outlives ``serve``: it exits when its parent goes away (it watches its
parent's pid), and ``serve`` restarts it if it dies, answering 503 meanwhile so senders
retry; nothing acknowledged depends on it staying up, since every 2xx follows a commit.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import socket
import tempfile
from pathlib import Path
from types import FrameType

from cartnudge.children import PARENT_CHECK_S, Child, handed_down, parent_gone

log = logging.getLogger("cartnudge.intake.writer_process")  # not __main__ in the child


class WriterProcess(Child):
    """Runs ``python -m cartnudge.intake.writer_process`` and keeps it running; webhooks
    get 503 while it is down."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        # A short private folder: Unix socket paths are limited to ~100 bytes.
        self.folder = Path(tempfile.mkdtemp(prefix="cartnudge-"))
        self.socket_path = self.folder / "ingest.sock"
        super().__init__(
            "ingest writer",
            "cartnudge.intake.writer_process",
            ["--socket", str(self.socket_path)],
            env,
        )

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def ready(self) -> bool:
        return self.accepting()

    def accepting(self) -> bool:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.socket_path))
        except OSError:
            return False
        finally:
            probe.close()
        return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="cartnudge ingest writer (started by serve)")
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--parent", required=True, type=int, help="exit when this pid is gone")
    args = parser.parse_args(argv)

    from cartnudge.clock import system_clock
    from cartnudge.config import Settings
    from cartnudge.db.engine import make_engine
    from cartnudge.intake.remote import WriterServer
    from cartnudge.intake.writer import IngestWriter
    from cartnudge.logs import configure_logging

    settings = handed_down("settings", Settings, Settings)
    configure_logging(settings.log_level)  # JSON lines on the stderr it shares with serve
    stopping = False

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    # Ctrl-C reaches the whole process group; serve decides when the writer stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # No test round trip before each batch: the writer retries a batch whose connection
    # turns out to be dead (IngestWriter), which is rarer than batches by far.
    engine = make_engine(settings.resolved_database_url, pre_ping=False)
    server = WriterServer(
        IngestWriter(engine, system_clock, batch_max=settings.ingest_batch_max), args.socket
    )
    try:
        while not stopping and not parent_gone(args.parent):
            server.serve_once(timeout=PARENT_CHECK_S)
    finally:
        server.close()
        engine.dispose()
        log.info(
            "ingest writer stopped: %d deliveries in %d commits",
            server.writer.deliveries,
            server.writer.batches,
        )


if __name__ == "__main__":
    main()
