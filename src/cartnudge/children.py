"""Processes ``cartnudge serve`` starts next to its web process, watched and restarted.

``serve`` is one command but several processes: the web process, the waiter and sender
loops (each process has its own GIL, so the loops' work never holds up an answer to a
webhook, and a loop holding SQLite's write lock is never waiting for the web process's
GIL meanwhile) and, on SQLite, the ingest writer. A child never outlives ``serve``: it is
given serve's pid and exits when serve is gone, even after a kill -9 (see ``parent_gone``);
``serve`` restarts a child that dies and stops each with SIGTERM, waiting for it to finish
what it was doing.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
RESTART_DELAY_S = 1.0
STOP_TIMEOUT_S = 30.0
PARENT_CHECK_S = 0.5  # how often a child checks that serve is still there


class Child:
    """Runs ``python -m <module> <args> --parent <this pid>`` and keeps it running."""

    def __init__(
        self, name: str, module: str, args: list[str], env: dict[str, str] | None = None
    ) -> None:
        self.name, self.module, self.args = name, module, args
        self.env = dict(os.environ if env is None else env)
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        """Start the child and wait until it is ready (``ready``)."""
        self._spawn()
        self._wait_ready()
        self._watcher = threading.Thread(target=self._watch, name=f"{self.name}-watch", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        """Ask the child to finish what it is doing and exit; kill it if it will not."""
        self._stopping.set()
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.error("%s did not stop in %s s; killing it", self.name, STOP_TIMEOUT_S)
                process.kill()
                process.wait()
        if self._watcher is not None:
            self._watcher.join(timeout=5)

    def ready(self) -> bool:
        """Whether the child has come up; by default, that it has started."""
        return True

    def _spawn(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", self.module, *self.args, "--parent", str(os.getpid())],
            env=self.env,
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start (code {self.process.returncode})")
            if self.ready():
                return
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} not ready after {START_TIMEOUT_S} s")

    def _watch(self) -> None:
        while not self._stopping.is_set():
            process = self.process
            assert process is not None
            code = process.wait()
            if self._stopping.is_set():
                return
            log.error("%s exited (code %s); restarting it", self.name, code)
            self._stopping.wait(RESTART_DELAY_S)
            if self._stopping.is_set():
                return
            self.restarts += 1
            try:
                self._spawn()
                self._wait_ready()
            except Exception:
                log.exception("%s restart failed; trying again", self.name)


def parent_gone(parent: int) -> bool:
    """In a child: whether the serve that started it has gone (its pid is no longer our
    parent's, also after a kill -9 of serve)."""
    return os.getppid() != parent
