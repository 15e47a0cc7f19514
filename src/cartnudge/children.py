"""Processes ``cartnudge serve`` starts next to its web process, watched and restarted.

``serve`` is one command but several processes: the web process, the waiter and sender
loops (each process has its own GIL, so the loops' work never holds up an answer to a
webhook, and a loop holding SQLite's write lock is never waiting for the web process's
GIL meanwhile) and the ingest writer. A child never outlives ``serve``: it is
given serve's pid and exits when serve is gone, even after a kill -9 (see ``parent_gone``);
``serve`` restarts a child that dies and stops each with SIGTERM, waiting for it to finish
what it was doing.

At start-up the children are forked from ``serve`` itself, once it has imported what they
run and frozen those objects out of the garbage collector's reach (``preload``): the pages
holding SQLAlchemy, the models and the rest are then shared, not loaded three times over
(bench/README.md, *Memory*). A fork is only taken while ``serve`` has no other thread; a
child restarted later, with uvicorn and the watchers running, is a fresh interpreter.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import setproctitle

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
RESTART_DELAY_S = 1.0
STOP_TIMEOUT_S = 30.0
PARENT_CHECK_S = 0.5  # how often a child checks that serve is still there

T = TypeVar("T")

# What serve handed down to the children it forks, with serve's pid as "_by" (see
# ``hand_down``).
_handed_down: dict[str, Any] = {}


class _Process(Protocol):
    """What a child is to its watcher: a ``subprocess.Popen`` or a ``_Forked``."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def send_signal(self, sig: int) -> None: ...
    def kill(self) -> None: ...


class _Forked:
    """A forked child, with the part of ``Popen``'s interface a watcher uses. Reaped by
    polling under a lock, so the watcher thread and ``stop`` never race for its status."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        with self._lock:
            if self.returncode is None:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(0.05)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def preload(*modules: str) -> None:
    """Import what the children will run and move every object so far out of the garbage
    collector's generations: a collection in a child then does not write to (and so copy)
    the pages it shares with ``serve``."""
    for module in modules:
        importlib.import_module(module)
    gc.collect()
    gc.freeze()


def hand_down(**objects: Any) -> None:
    """In serve, before forking: objects a forked child takes as they are instead of building
    its own from the same environment (the settings; an engine with no connection open).
    Building them again would write to, and so copy, pages the child shares with serve:
    about 1.5 MiB a child (bench/README.md, *Memory*)."""
    _handed_down.update(objects, _by=os.getpid())


def handed_down(name: str, kind: type[T], make: Callable[[], T]) -> T:
    """In a child: what serve handed down as ``name`` if this process was forked from it,
    else ``make()`` (a child started by exec, as after a restart, builds its own)."""
    value = _handed_down.get(name)
    if _handed_down.get("_by") == os.getppid() and isinstance(value, kind):
        return value
    return make()


class Child:
    """Runs ``<module>.main([*args, "--parent", <this pid>])`` in a child process, forked
    from this one while it has no other thread (else ``python -m <module>``), and keeps it
    running."""

    def __init__(
        self, name: str, module: str, args: list[str], env: dict[str, str] | None = None
    ) -> None:
        self.name, self.module, self.args = name, module, args
        self.env = dict(os.environ if env is None else env)
        self.process: _Process | None = None
        self.restarts = 0
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self, *, watch: bool = True) -> None:
        """Start the child and wait until it is ready (``ready``); then watch it, unless
        another child is still to be forked first (``watch`` later)."""
        self._spawn()
        self._wait_ready()
        if watch:
            self.watch()

    def watch(self) -> None:
        """Restart the child whenever it exits, until ``stop``."""
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
        argv = [*self.args, "--parent", str(os.getpid())]
        if threading.active_count() > 1:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", self.module, *argv], env=self.env
            )
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; its work is tested through serve
            _run_forked(self.module, argv, self.env)
        self.process = _Forked(pid)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        assert self.process is not None
        while time.monotonic() < deadline:
            if (code := self.process.poll()) is not None:
                raise RuntimeError(f"{self.name} exited at start (code {code})")
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


def _run_forked(module: str, argv: list[str], env: dict[str, str]) -> None:
    """In a forked child: become ``python -m module argv`` and never return to serve's code."""
    code = 1
    try:
        # serve's own handlers (SIGTERM unwinds serve) are not the child's; its main sets
        # what it needs.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        # Named in ps, pgrep and /proc as the same child started by exec would be (before
        # the environment changes: setproctitle may reuse its memory).
        setproctitle.setproctitle(" ".join([sys.executable, "-m", module, *argv]))
        os.environ.clear()
        os.environ.update(env)
        importlib.import_module(module).main(argv)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def parent_gone(parent: int) -> bool:
    """In a child: whether the serve that started it has gone (its pid is no longer our
    parent's, also after a kill -9 of serve)."""
    return os.getppid() != parent
