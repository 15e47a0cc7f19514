"""``/metrics`` over every process of one ``serve``.

``serve`` is several processes (web, ingest writer, loops; more web processes with
``--workers``), and the counters that matter are kept where the work happens: the write
turn's timings in the writer and the loops. prometheus_client's multiprocess mode keeps each
process's values in files in one folder, and ``/metrics`` adds them up. The folder must be
named before prometheus_client is first imported in any of the processes, so ``serve`` enters
``shared_between_processes`` first thing and its children inherit it from the environment.
A single process (tests, ``cartnudge web`` without it) keeps its values in memory.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "cartnudge-metrics-"


def remove_stale_folders() -> list[Path]:
    """Remove the metrics folders of serves that are gone: one killed (``kill -9``, a
    crash) never ran its clean-up, and its folder would stay in the temporary directory.
    A folder whose serve still runs is left alone. Returns those removed."""
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}*-*"):
        pid = folder.name.removeprefix(PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextmanager
def shared_between_processes() -> Iterator[None]:
    """Inside, this process and the ones it starts share one fresh folder for their
    metrics, removed on the way out; an operator's own ``PROMETHEUS_MULTIPROC_DIR`` is
    kept as it is."""
    if os.environ.get(ENV):
        yield
        return
    if "prometheus_client" in sys.modules:
        # Too late: its values already live in this process's memory.
        raise RuntimeError("shared_between_processes must begin before prometheus_client loads")
    remove_stale_folders()
    # Named with this process's id, so a later serve can tell it was left by one killed.
    folder = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")
    os.environ[ENV] = folder
    try:
        yield
    finally:
        del os.environ[ENV]
        shutil.rmtree(folder, ignore_errors=True)


def latest() -> bytes:
    """The text exposition of every metric: summed over the processes sharing the folder
    when there is one, else this process's own."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    if not os.environ.get(ENV):
        return bytes(generate_latest())
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return bytes(generate_latest(registry))
