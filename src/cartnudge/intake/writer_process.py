"""The ingest writer process on SQLite: started, watched and stopped by ``cartnudge serve``.

SQLite allows one writer at a time, and a writer thread inside the web process shares the
web process's GIL. So on SQLite ``serve`` runs one writer process next to its web
process(es): the web side verifies and parses, the writer commits (see ``remote.py``).

The writer never outlives ``serve``: it exits when its parent goes away (it watches its
parent's pid), and ``serve`` restarts it if it dies, answering 503 meanwhile so senders
retry; nothing acknowledged depends on it staying up, since every 2xx follows a commit.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

log = logging.getLogger("cartnudge.intake.writer_process")  # not __main__ in the child

START_TIMEOUT_S = 30.0
RESTART_DELAY_S = 1.0
STOP_TIMEOUT_S = 30.0
PARENT_CHECK_S = 0.5  # how often an idle writer checks that serve is still there


class WriterProcess:
    """Runs ``python -m cartnudge.intake.writer_process`` and keeps it running."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        # A short private folder: Unix socket paths are limited to ~100 bytes.
        self.folder = Path(tempfile.mkdtemp(prefix="cartnudge-"))
        self.socket_path = self.folder / "ingest.sock"
        self.env = dict(os.environ if env is None else env)
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        """Start the writer and wait until it accepts connections."""
        self._spawn()
        self._wait_ready()
        self._watcher = threading.Thread(target=self._watch, name="writer-watch", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        """Ask the writer to finish its batch and exit; kill it if it will not."""
        self._stopping.set()
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.error("ingest writer did not stop in %s s; killing it", STOP_TIMEOUT_S)
                process.kill()
                process.wait()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _spawn(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "cartnudge.intake.writer_process",
                "--socket",
                str(self.socket_path),
                "--parent",
                str(os.getpid()),
            ],
            env=self.env,
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"ingest writer exited at start (code {self.process.returncode})"
                )
            if self.accepting():
                return
            time.sleep(0.02)
        raise RuntimeError(f"ingest writer not ready after {START_TIMEOUT_S} s")

    def accepting(self) -> bool:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.socket_path))
        except OSError:
            return False
        finally:
            probe.close()
        return True

    def _watch(self) -> None:
        while not self._stopping.is_set():
            process = self.process
            assert process is not None
            code = process.wait()
            if self._stopping.is_set():
                return
            log.error(
                "ingest writer exited (code %s); restarting, webhooks get 503 meanwhile", code
            )
            self._stopping.wait(RESTART_DELAY_S)
            if self._stopping.is_set():
                return
            self.restarts += 1
            try:
                self._spawn()
                self._wait_ready()
            except Exception:
                log.exception("ingest writer restart failed; trying again")


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

    settings = Settings()
    configure_logging(settings.log_level)  # JSON lines on the stderr it shares with serve
    stopping = False

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    # Ctrl-C reaches the whole process group; serve decides when the writer stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    engine = make_engine(settings.resolved_database_url)
    server = WriterServer(
        IngestWriter(engine, system_clock, batch_max=settings.ingest_batch_max), args.socket
    )
    try:
        while not stopping and os.getppid() == args.parent:
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
