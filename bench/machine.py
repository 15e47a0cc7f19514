"""What the numbers were measured on: cores, memory, disk, software versions."""

from __future__ import annotations

import math
import os
import platform
import resource
import sqlite3
import subprocess
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "sqlalchemy",
    "psycopg",
    "orjson",
    "pydantic",
    "standardwebhooks",
)
FSYNC_PROBES = 200


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _filesystem(path: str) -> str:
    """The type of the filesystem holding ``path`` (tmpfs would make fsync free)."""
    best, kind = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mount, fstype, *_ = line.split()
            if path.startswith(mount) and len(mount) > len(best):
                best, kind = mount, fstype
    except OSError:
        pass
    return kind


def fsync_ms(directory: str) -> float:
    """Median-ish cost of one small write + fsync where the databases live."""
    fd, name = tempfile.mkstemp(dir=directory)
    try:
        started = time.perf_counter()
        for _ in range(FSYNC_PROBES):
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
        return round((time.perf_counter() - started) / FSYNC_PROBES * 1000, 3)
    finally:
        os.close(fd)
        Path(name).unlink()


def postgres_version() -> str | None:
    try:
        from cartnudge.testing.postgres import find_bindir

        done = subprocess.run(
            [str(find_bindir() / "postgres"), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (RuntimeError, OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout


def code_state(repo: Path) -> dict[str, Any]:
    """Which code was measured: the commit, and how many files under src/ differ from it
    (or, when ``PYTHONPATH`` points at another copy of the package, that copy's path)."""
    import cartnudge

    package = Path(cartnudge.__file__).resolve().parent
    if not package.is_relative_to(repo):
        return {"commit": None, "uncommitted_src_files": None, "package": str(package)}
    try:
        commit = _git(repo, "rev-parse", "--short", "HEAD").strip()
        changed = _git(repo, "status", "--porcelain", "--", "src").splitlines()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "uncommitted_src_files": None}
    return {"commit": commit, "uncommitted_src_files": len(changed), "package": str(package)}


def cpu_reference_ms() -> float:
    """How fast this host runs plain Python right now: the best of five ``sum(range(10**6))``
    in ms. The host's speed varies from hour to hour (a shared machine); figures taken at
    different times compare only after dividing by this."""
    best = math.inf
    for _ in range(5):
        started = time.perf_counter()
        sum(range(10**6))
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 2)


def describe() -> dict[str, Any]:
    tmp = tempfile.gettempdir()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "database_dir": tmp,
        "database_fs": _filesystem(tmp),
        "fsync_ms": fsync_ms(tmp),
        "cpu_reference_ms": cpu_reference_ms(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "code": code_state(Path(__file__).resolve().parent.parent),
    }


def process_tree(root: int) -> dict[int, list[str]]:
    """``/proc/<pid>/stat`` fields (after the name) of ``root`` and every process under it;
    empty if ``root`` is gone."""
    stats: dict[int, list[str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            stats[int(stat.parent.name)] = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
    if root not in stats:
        return {}
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, fields in stats.items() if int(fields[1]) == parent]
        tree.update(children)
        frontier.extend(children)
    return {pid: stats[pid] for pid in tree}


def memory_mib(root: int) -> dict[str, float]:
    """Resident memory of ``root`` and every process under it, in MiB: *rss* counts pages
    shared between them once per process, *pss* divides each shared page among its sharers
    (so the tree's pss is what it really costs the machine)."""
    totals = {"rss": 0.0, "pss": 0.0, "processes": 0.0}
    for pid in process_tree(root):
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name in ("Rss", "Pss"):
                totals[name.lower()] += int(value.split()[0]) / 1024
        totals["processes"] += 1
    return {k: round(v, 1) for k, v in totals.items()}


class CpuMeter:
    """CPU used over an interval, in cores: by this process, by the server process, and by
    the whole machine (so that anything else running at the same time shows up)."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.start = self._sample()

    def _sample(self) -> tuple[float, float, float, float, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        own = usage.ru_utime + usage.ru_stime
        busy, steal = self._machine_cpu()
        return time.perf_counter(), own, self._server_cpu(), busy, steal

    def _server_cpu(self) -> float:
        """CPU seconds of the server process and every process under it (its workers)."""
        if self.server_pid is None:
            return math.nan
        tick = os.sysconf("SC_CLK_TCK")
        tree = process_tree(self.server_pid)
        if not tree:
            return math.nan
        return sum((int(fields[11]) + int(fields[12])) / tick for fields in tree.values())

    @staticmethod
    def _machine_cpu() -> tuple[float, float]:
        """(busy, stolen) CPU seconds of the whole machine; *stolen* is time the hypervisor
        gave to other guests, a sign that the host, not this machine, was busy."""
        try:
            with open("/proc/stat") as f:  # noqa: PTH123
                fields = [int(v) for v in f.readline().split()[1:]] + [0] * 8
        except OSError:
            return math.nan, math.nan
        tick = os.sysconf("SC_CLK_TCK")
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
        return (user + nice + system + irq + softirq) / tick, steal / tick

    def stop(self) -> dict[str, float]:
        end = self._sample()
        wall = end[0] - self.start[0]
        client, server, machine, steal = ((end[i] - self.start[i]) / wall for i in (1, 2, 3, 4))
        known = client + (0.0 if math.isnan(server) else server)
        return {
            "client_cpu_cores": round(client, 3),
            "server_cpu_cores": round(server, 3),
            "machine_cpu_cores": round(machine, 3),
            "other_cpu_cores": round(max(0.0, machine - known), 3),
            "stolen_cpu_cores": round(steal, 3),
        }
