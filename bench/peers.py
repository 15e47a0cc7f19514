"""Peers: the same pending reminders held by cartnudge, by Celery and by APScheduler.

    .venv/bin/python -m bench.peers [--count 1000000] [--due 10000]
        [--only cartnudge,celery,apscheduler] [--time-limit 600] [--out bench/results/peers]

The workload, the same for every system: ``count`` reminders, of which ``due`` (spread
evenly through the order they are scheduled in) were due a minute before scheduling began
and the rest fall due 2 to 26 hours later. Per system:

1. *schedule*: one process schedules them all (cartnudge: open carts with their timer,
   written with ``insert_open_carts``; Celery: ``apply_async(eta=…)`` to Redis;
   APScheduler: ``add_job`` into its SQLAlchemy job store on SQLite), stopping at
   ``--time-limit``. Then that process (and Redis) is killed with SIGKILL and what is still
   pending is counted.
2. *fire*: a new process (cartnudge: the waiter's ``wake_due``; Celery: a real
   ``celery worker``; APScheduler: a ``BackgroundScheduler``) starts on what survived; the
   time from its start until every due reminder fired, and the peak RSS of every process
   involved.
3. *restart*: on a copy of the state after step 1, the same start, but SIGKILL to every
   process involved once half the due reminders fired; then a restart, and what fires and
   what is still pending afterwards.

Writes ``--out``.md and .json (default bench/results/peers). Nothing is left running.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "bench" / "results" / "peers"
REDIS_SERVER = "/usr/bin/redis-server"
SYSTEMS = ("cartnudge", "cartnudge-pg", "celery", "apscheduler")

FIRE_LOG_ENV = "PEERS_FIRE_LOG"
REDIS_URL_ENV = "PEERS_REDIS_URL"

DUE_AGO_S = 60.0  # the due reminders fell due this long before scheduling began
FUTURE_FROM_S = 2 * 3600.0  # the others fall due from 2 h after scheduling began …
FUTURE_SPREAD_S = 24 * 3600.0  # … spread over the following day
CHUNK = 5000  # cartnudge carts per insert_open_carts call (its own transaction size)
POLL_S = 0.05  # how often the parent looks at fire logs and stores
QUIET_S = 15.0  # after a restart: nothing fired for this long and nothing left to fire → stop
MARGIN_S = 120.0  # a child stops itself at the time limit; the parent waits this much longer
CELERY_QUEUE = "celery"  # the Redis list kombu keeps the default queue in
CELERY_UNACKED = "unacked"  # the Redis hash kombu keeps delivered, unacknowledged messages in
APSCHEDULER_TABLE = "apscheduler_jobs"


def log(message: str) -> None:
    print(f"[peers {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the workload


@dataclass(frozen=True)
class Workload:
    """Reminder ``i`` of ``count``: due now if it is one of the evenly spread ``due``."""

    count: int
    due: int
    t0: float  # epoch seconds: when scheduling began

    @property
    def stride(self) -> int:
        return max(1, self.count // self.due)

    def is_due(self, i: int) -> bool:
        return i % self.stride == 0 and i // self.stride < self.due

    def due_before(self, k: int) -> int:
        """How many of reminders 0 … k-1 are due (how many due a capped run scheduled)."""
        return min(self.due, -(-k // self.stride))

    def future_at(self, i: int) -> float:
        return self.t0 + FUTURE_FROM_S + i * FUTURE_SPREAD_S / self.count

    def at(self, i: int) -> float:
        return self.t0 - DUE_AGO_S if self.is_due(i) else self.future_at(i)


# ------------------------------------------------------- the peers' job body and children


@functools.cache
def _fire_fd() -> int:
    return os.open(os.environ[FIRE_LOG_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def record_fire(reminder: int) -> None:
    """The body of every Celery task and APScheduler job: append the reminder's number to
    the fire log. One write(2) on an O_APPEND descriptor, so the line is in the kernel
    before the call returns and a SIGKILL right after loses nothing that ran, and lines
    from several threads never interleave."""
    os.write(_fire_fd(), b"%d\n" % reminder)


def _emit(event: str, **data: Any) -> None:
    print(json.dumps({"event": event, **data}), flush=True)


def _linger() -> None:
    """Stay alive after reporting, so the parent can read this process's peak RSS before
    it kills it (a process that has exited has no /proc entry to read)."""
    sys.stdin.read()


def _peak_rss_mib_self() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _scheduled(work: Workload, count: int, elapsed: float) -> None:
    """A scheduling child's last word: how many it scheduled, how fast, at what peak."""
    _emit(
        "done",
        scheduled=count,
        due_scheduled=work.due_before(count),
        seconds=elapsed,
        peak_rss_mib=_peak_rss_mib_self(),
    )
    _linger()


def _schedule_each(work: Workload, time_limit: float, schedule: Callable[[int], Any]) -> None:
    """Schedule reminder 0, 1, 2, … one call each until all are or the time limit passes
    (checked every thousand); report progress every 100,000, then the total."""
    started = time.perf_counter()
    deadline = started + time_limit
    i = 0
    while i < work.count:
        if i % 1000 == 0:
            if time.perf_counter() >= deadline:
                break
            if i and i % 100_000 == 0:
                _emit("progress", scheduled=i, seconds=round(time.perf_counter() - started, 1))
        schedule(i)
        i += 1
    _scheduled(work, i, time.perf_counter() - started)


def child_cartnudge_schedule(spec: dict[str, Any]) -> None:
    from cartnudge.db.engine import make_engine
    from cartnudge.db.migrate import upgrade
    from cartnudge.db.session import writing
    from cartnudge.shops.service import add_shop
    from cartnudge.testing.carts import insert_open_carts

    work = Workload(**spec["workload"])
    t0 = datetime.fromtimestamp(work.t0, UTC)
    engine = make_engine(spec["url"])
    upgrade(engine)  # not timed: a store's schema exists before its first cart
    with writing(engine) as conn:
        shop = add_shop(
            conn,
            slug="peers",
            name="Peers",
            timezone="Europe/London",
            currency="EUR",
            now=t0 - timedelta(days=1),
        )
    # A due cart was last active 3 h ago (a 64 EUR cart's first reminder comes after 2 h),
    # so the waiter's decision for it is "reminder 1", not "wait".
    due_active = t0 - timedelta(hours=3)
    due_wake = t0 - timedelta(seconds=DUE_AGO_S)
    started = time.perf_counter()
    deadline = started + spec["time_limit"]
    done = 0
    next_report = 100_000
    while done < work.count and time.perf_counter() < deadline:
        n = min(CHUNK, work.count - done)
        due_n = work.due_before(done + n) - work.due_before(done)
        if due_n:
            insert_open_carts(
                engine, shop.id, due_n, active_at=due_active, wake_at=due_wake, shoppers=True
            )
        future = datetime.fromtimestamp(work.future_at(done), UTC)
        insert_open_carts(engine, shop.id, n - due_n, active_at=t0, wake_at=future)
        done += n
        if done >= next_report:
            _emit("progress", scheduled=done, seconds=round(time.perf_counter() - started, 1))
            next_report += 100_000
    elapsed = time.perf_counter() - started
    engine.dispose()
    _scheduled(work, done, elapsed)


def child_cartnudge_waiter(spec: dict[str, Any]) -> None:
    from cartnudge.db.engine import make_engine
    from cartnudge.timing.waiter import wake_due

    engine = make_engine(spec["url"])
    started = time.perf_counter()
    report = wake_due(engine, datetime.now(UTC))
    elapsed = time.perf_counter() - started
    engine.dispose()
    _emit("done", **report.as_dict(), seconds=elapsed, peak_rss_mib=_peak_rss_mib_self())
    _linger()


def child_celery_produce(spec: dict[str, Any]) -> None:
    from bench.peer_tasks import remind

    work = Workload(**spec["workload"])
    _schedule_each(
        work,
        spec["time_limit"],
        lambda i: remind.apply_async(args=(i,), eta=datetime.fromtimestamp(work.at(i), UTC)),
    )


def _apscheduler(url: str, *, default_grace: bool = False) -> Any:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    # APScheduler's default misfire_grace_time is 1 s: a date job found more than 1 s
    # late (every due reminder after any restart) is logged as missed and deleted without
    # running. None lets it run however late; the fire and restart figures use that, and
    # the `apscheduler_default_grace` check measures what the default does.
    defaults: dict[str, Any] = {} if default_grace else {"misfire_grace_time": None}
    return BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=url)}, job_defaults=defaults, timezone=UTC
    )


def child_apscheduler_schedule(spec: dict[str, Any]) -> None:
    work = Workload(**spec["workload"])
    scheduler = _apscheduler(spec["url"])
    # Started paused: add_job then writes straight to the job store (a stopped scheduler
    # would keep the jobs in memory until start) and nothing fires while scheduling.
    scheduler.start(paused=True)
    _schedule_each(
        work,
        spec["time_limit"],
        lambda i: scheduler.add_job(
            "bench.peers:record_fire",
            trigger="date",
            run_date=datetime.fromtimestamp(work.at(i), UTC),
            args=(i,),
            id=f"r{i}",
        ),
    )


def child_apscheduler_run(spec: dict[str, Any]) -> None:
    scheduler = _apscheduler(spec["url"], default_grace=spec.get("default_grace", False))
    scheduler.start()
    _emit("started")
    _linger()


def child_apscheduler_default_grace(spec: dict[str, Any]) -> None:
    """Jobs that fell due a minute ago (as while a scheduler was down), then a scheduler
    with APScheduler's default job settings: how many run, how many are left."""
    count = spec["count"]
    scheduler = _apscheduler(spec["url"], default_grace=True)
    scheduler.start(paused=True)
    late = datetime.now(UTC) - timedelta(seconds=DUE_AGO_S)
    for i in range(count):
        scheduler.add_job(
            "bench.peers:record_fire", trigger="date", run_date=late, args=(i,), id=f"r{i}"
        )
    scheduler.resume()
    deadline = time.monotonic() + 30
    while scheduler.get_jobs() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)  # let submitted jobs finish
    left = len(scheduler.get_jobs())
    scheduler.shutdown()
    _emit("done", scheduled=count, left_in_store=left)


CHILDREN: dict[str, Callable[[dict[str, Any]], None]] = {
    "cartnudge-schedule": child_cartnudge_schedule,
    "cartnudge-waiter": child_cartnudge_waiter,
    "celery-produce": child_celery_produce,
    "apscheduler-schedule": child_apscheduler_schedule,
    "apscheduler-run": child_apscheduler_run,
    "apscheduler-default-grace": child_apscheduler_default_grace,
}


# ------------------------------------------------------------------ processes and probes


def proc_status_kib(pid: int, key: str) -> int | None:
    """A ``kB`` line of /proc/<pid>/status (VmRSS now, VmHWM the peak so far)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def peak_mib(pid: int) -> float | None:
    kib = proc_status_kib(pid, "VmHWM")
    return None if kib is None else round(kib / 1024, 1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def size_mib(*paths: Path) -> float:
    total = 0
    for path in paths:
        if path.is_dir():
            total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        elif path.exists():
            total += path.stat().st_size
    return round(total / 2**20, 1)


_RUNNING: list[subprocess.Popen[bytes]] = []  # every process this run started, to end them


def _end(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL one process this run started (by its pid) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if proc in _RUNNING:
        _RUNNING.remove(proc)


def end_all() -> None:
    for proc in list(_RUNNING):
        _end(proc)


def child_env(extra: dict[str, str]) -> dict[str, str]:
    # Like the Makefile: without cached bytecode every process recompiles its imports,
    # seconds of start-up that would be counted in the fire times.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **extra}


class Child:
    """A subprocess that reports JSON lines on stdout; its stderr goes to a log file."""

    def __init__(self, name: str, argv: list[str], logdir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        with self.log_path.open("ab") as stderr:
            self.started = time.perf_counter()
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=REPO,
                env=child_env(env),
            )
        _RUNNING.append(self.proc)
        threading.Thread(target=self._read, daemon=True).start()

    @classmethod
    def of(cls, role: str, spec: dict[str, Any], logdir: Path, env: dict[str, str]) -> Child:
        argv = [sys.executable, "-m", "bench.peers", "--child", role, "--spec", json.dumps(spec)]
        return cls(role, argv, logdir, env)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                event["_at"] = time.perf_counter()
                self.events.put(event)
        self.events.put({"event": "eof", "_at": time.perf_counter()})

    def wait_for(self, event: str, timeout: float) -> dict[str, Any]:
        deadline = time.perf_counter() + timeout
        while True:
            try:
                got = self.events.get(timeout=max(0.01, deadline - time.perf_counter()))
            except queue.Empty:
                raise TimeoutError(f"{self.name}: no {event!r} within {timeout:.0f} s") from None
            if got["event"] == event:
                return got
            if got["event"] == "progress":
                log(f"  {self.name}: {got['scheduled']:,} scheduled in {got['seconds']} s")
            elif got["event"] == "eof":
                raise RuntimeError(f"{self.name} exited early:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def peak_mib(self) -> float | None:
        return peak_mib(self.proc.pid)

    def kill9(self) -> None:
        _end(self.proc)


class FireLog:
    """The file the peers' job body appends to: which reminders ran, how often."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()
        self.offset = 0
        self.rest = b""
        self.ids: set[int] = set()
        self.runs = 0

    def poll(self) -> int:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        *lines, self.rest = (self.rest + data).split(b"\n")
        for line in lines:
            self.ids.add(int(line))
        self.runs += len(lines)
        return len(self.ids)

    @property
    def duplicates(self) -> int:
        return self.runs - len(self.ids)

    def reached(self, child: Child, until: int, first: list[float]) -> Callable[[], bool]:
        """A poll for ``poll_until``: have ``until`` reminders run? Notes in ``first`` how
        long after ``child`` started the first one ran; raises if ``child`` has died."""

        def check() -> bool:
            n = self.poll()
            if n and not first:
                first.append(time.perf_counter() - child.started)
            if not child.alive():
                raise RuntimeError(f"{child.name} exited:\n{child.tail()}")
            return n >= until

        return check


class RedisServer:
    """Debian's redis-server on a free port with its data in ``directory``.

    Persistence: the append-only file with ``appendfsync everysec`` (Redis's recommended
    setting: at most about a second of writes lost on a crash) and no RDB snapshots, so a
    restart loads exactly what the AOF holds. Everything else is Redis's default (AOF
    rewrites included)."""

    def __init__(self, directory: Path, logdir: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logdir = logdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 900) -> float:
        """Start and wait until it answers (after loading its AOF); the seconds it took."""
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                str(self.logdir / f"redis-{self.port}.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _RUNNING.append(self.proc)
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.logdir}")
            try:
                client.ping()
                break
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.perf_counter() - started > timeout:
                    raise
                time.sleep(0.05)
        client.close()
        return time.perf_counter() - started

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port)

    def peak_mib(self) -> float | None:
        return None if self.proc is None else peak_mib(self.proc.pid)

    def kill9(self) -> None:
        if self.proc is not None:
            _end(self.proc)
            self.proc = None

    def stop(self) -> None:
        """A clean SHUTDOWN (it flushes the AOF), for taking a copy of the data."""
        if self.proc is None:
            return
        import redis

        with contextlib.suppress(redis.ConnectionError):
            self.client().shutdown()
        self.proc.wait(timeout=300)
        _end(self.proc)
        self.proc = None


def poll_until(
    done: Callable[[], bool], timeout: float, every: float = POLL_S
) -> tuple[bool, float]:
    """Call ``done`` until it is true or ``timeout`` passes; (it was, seconds waited)."""
    started = time.perf_counter()
    while True:
        if done():
            return True, time.perf_counter() - started
        if time.perf_counter() - started >= timeout:
            return False, time.perf_counter() - started
        time.sleep(every)


def copy_files(src: Path, dst: Path, names: list[str]) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (src / name).is_dir():
            shutil.copytree(src / name, dst / name)
        elif (src / name).exists():
            shutil.copy2(src / name, dst / name)


# ------------------------------------------------------------------------------ results


@dataclass
class Result:
    system: str
    label: str
    setup: str
    count: int
    due: int
    scheduled: int = 0
    due_scheduled: int = 0
    schedule_s: float = math.nan
    capped: bool = False
    schedule_rss_mib: float | None = None  # the scheduling process
    survived_schedule_kill: int | None = None  # pending after SIGKILL right after scheduling
    restore_s: float | None = None  # e.g. Redis loading its AOF after that kill
    memory_mib: dict[str, float | None] | None = None  # fire phase, peak RSS per process
    store_mib: dict[str, float] | None = None  # e.g. Redis used_memory
    disk_mib: float | None = None
    fire_s: float | None = None  # process start → every due reminder fired
    fire_limit: float = math.nan
    first_fire_s: float | None = None
    fired: int = 0
    fire_duplicates: int = 0
    fire_extra: dict[str, Any] | None = None
    restart: dict[str, Any] | None = None

    @property
    def schedule_rate(self) -> float:
        return self.scheduled / self.schedule_s if self.schedule_s else math.nan

    @property
    def memory_total_mib(self) -> float | None:
        if not self.memory_mib:
            return None
        values = [v for v in self.memory_mib.values() if v is not None]
        return round(sum(values), 1) if values else None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["schedule_rate_per_s"] = round(self.schedule_rate, 1)
        out["memory_total_mib"] = self.memory_total_mib
        return out


# ------------------------------------------------------------------------- cartnudge


def pss_mib(pid: int) -> float | None:
    """Proportional set size: shared pages divided among the processes sharing them, so a
    sum over PostgreSQL's processes counts its shared buffers once, not once per backend."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        pass
    return None


def children_of(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


class SqliteStore:
    """cartnudge's default: one SQLite file (WAL) per database, here one folder each."""

    label = "cartnudge (SQLite)"
    setup = "SQLite (WAL, synchronous=FULL)"
    files = ("carts.db", "carts.db-wal", "carts.db-shm")

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp

    def url(self, name: str) -> str:
        return f"sqlite:///{self.tmp / name / 'carts.db'}"

    def create(self, name: str) -> None:
        (self.tmp / name).mkdir()

    def copy(self, src: str, dst: str) -> None:
        copy_files(self.tmp / src, self.tmp / dst, list(self.files))

    def drop(self, name: str) -> None:
        shutil.rmtree(self.tmp / name, ignore_errors=True)

    def crash(self) -> str:
        return ""  # no server: the file is all there is

    def disk_mib(self, name: str) -> float:
        return size_mib(*(self.tmp / name / f for f in self.files))

    def memory_mib(self) -> dict[str, float | None]:
        return {}

    def close(self) -> None:
        pass


class PostgresStore:
    """A private PostgreSQL 15 with fsync on (``PostgresServer(durable=True)``)."""

    label = "cartnudge (PostgreSQL)"
    setup = "a private PostgreSQL 15, fsync and synchronous_commit on"

    def __init__(self, tmp: Path) -> None:
        from cartnudge.testing.postgres import PostgresServer

        self.server = PostgresServer(durable=True).start()

    def url(self, name: str) -> str:
        return self.server.url.rsplit("/", 1)[0] + "/" + name

    def _admin(self, sql: str) -> None:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.server.url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(sql))
        finally:
            engine.dispose()

    def create(self, name: str) -> None:
        self._admin(f"CREATE DATABASE {name}")

    def copy(self, src: str, dst: str) -> None:
        self._admin(f"CREATE DATABASE {dst} TEMPLATE {src}")

    def drop(self, name: str) -> None:
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def _pids(self) -> list[int]:
        try:
            postmaster = int((self.server.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        return [postmaster, *children_of(postmaster)]

    def crash(self) -> str:
        """SIGKILL to the postmaster and every backend it started, then a start that
        runs crash recovery from the WAL: a power cut, as far as the database can tell."""
        pids = self._pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        poll_until(lambda: not any(Path(f"/proc/{p}").exists() for p in pids), 60)
        self.server.resume()
        return " and every PostgreSQL process (SIGKILL; restarted with crash recovery)"

    def disk_mib(self, name: str) -> float:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.server.url)
        try:
            with engine.connect() as conn:
                size = conn.execute(text(f"SELECT pg_database_size('{name}')")).scalar_one()
        finally:
            engine.dispose()
        return round(int(size) / 2**20, 1)

    def memory_mib(self) -> dict[str, float | None]:
        values = [pss_mib(pid) for pid in self._pids()]
        return {"PostgreSQL (PSS, all processes)": round(sum(v or 0.0 for v in values), 1)}

    def close(self) -> None:
        self.server.stop()


def _cartnudge_counts(url: str) -> dict[str, int]:
    """Sends queued, carts with a send, and first reminders still waiting (due or not)."""
    from sqlalchemy import func, select

    from cartnudge.db.engine import make_engine
    from cartnudge.db.models import Cart, Send
    from cartnudge.db.session import reading

    carts, sends = Cart, Send
    now = datetime.now(UTC)
    engine = make_engine(url)
    waiting = (
        select(func.count())
        .select_from(carts)
        .where(
            carts.c.status == "open",
            carts.c.reminders_sent == 0,
            carts.c.next_wake_at.is_not(None),
        )
    )
    try:
        with reading(engine) as conn:
            return {
                "sends": conn.execute(select(func.count()).select_from(sends)).scalar_one(),
                "carts_sent": conn.execute(
                    select(func.count(func.distinct(sends.c.cart_id)))
                ).scalar_one(),
                "waiting_future": conn.execute(
                    waiting.where(carts.c.next_wake_at > now)
                ).scalar_one(),
                "waiting_due": conn.execute(
                    waiting.where(carts.c.next_wake_at <= now)
                ).scalar_one(),
            }
    finally:
        engine.dispose()


def _sends_counter(url: str) -> tuple[Callable[[], int], Callable[[], None]]:
    """A cheap repeated count of queued sends, and how to close it."""
    from sqlalchemy import func, select

    from cartnudge.db.engine import make_engine
    from cartnudge.db.models import Send

    engine = make_engine(url, pool_size=1)
    query = select(func.count()).select_from(Send)

    def count() -> int:
        with engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    return count, engine.dispose


def run_cartnudge(
    opts: argparse.Namespace, tmp: Path, store: SqliteStore | PostgresStore
) -> Result:
    logdir = tmp / "logs"
    work = Workload(opts.count, opts.due, time.time())
    result = Result(
        "cartnudge" if isinstance(store, SqliteStore) else "cartnudge-pg",
        store.label,
        f"the waiter's `wake_due` in a process of its own, on {store.setup}; the carts "
        f"written by `insert_open_carts`, {CHUNK:,} rows per transaction",
        opts.count,
        opts.due,
    )
    store.create("live")
    log(f"{result.label}: scheduling {opts.count:,} carts")
    spec = {"workload": asdict(work), "url": store.url("live"), "time_limit": opts.time_limit}
    sched = Child.of("cartnudge-schedule", spec, logdir, {})
    done = sched.wait_for("done", opts.time_limit + MARGIN_S)
    result.schedule_rss_mib = sched.peak_mib()
    sched.kill9()  # SIGKILL right after its last commit returned …
    store.crash()  # … and, on PostgreSQL, to the database server too
    result.scheduled, result.due_scheduled = done["scheduled"], done["due_scheduled"]
    result.schedule_s, result.capped = done["seconds"], done["scheduled"] < opts.count
    counts = _cartnudge_counts(store.url("live"))
    result.survived_schedule_kill = counts["waiting_future"] + counts["waiting_due"]
    result.disk_mib = store.disk_mib("live")
    log(
        f"{result.label}: {result.scheduled:,} in {result.schedule_s:.1f} s; after SIGKILL "
        f"{result.survived_schedule_kill:,} pending"
    )
    store.copy("live", "snapshot")

    # Fire: a new waiter process decides every due cart and enqueues its reminder.
    waiter = Child.of("cartnudge-waiter", {"url": store.url("live")}, logdir, {})
    report = waiter.wait_for("done", opts.fire_limit)
    result.fire_s = report["_at"] - waiter.started
    result.memory_mib = {"waiter": waiter.peak_mib(), **store.memory_mib()}
    waiter.kill9()
    after = _cartnudge_counts(store.url("live"))
    result.fired = after["carts_sent"]
    result.fire_duplicates = after["sends"] - after["carts_sent"]
    result.fire_extra = {
        "wake_due_s": round(report["seconds"], 3),
        "moves": {k: report[k] for k in ("woken", "reminders", "rescheduled", "given_up")},
        "disk_after_fire_mib": store.disk_mib("live"),
    }
    store.drop("live")
    log(
        f"{result.label}: {result.fired:,} due carts enqueued {result.fire_s:.2f} s after the "
        f"waiter started (wake_due itself {report['seconds']:.2f} s)"
    )

    # Restart: SIGKILL once half the due reminders are enqueued (mid-transaction, most
    # likely), then a new waiter on the same database.
    count_sends, close = _sends_counter(store.url("snapshot"))
    half = math.ceil(result.due_scheduled / 2)
    waiter = Child.of("cartnudge-waiter", {"url": store.url("snapshot")}, logdir, {})
    reached, _ = poll_until(lambda: count_sends() >= half, opts.fire_limit, every=0.01)
    waiter.kill9()
    close()
    killed = "the waiter process (SIGKILL)" + store.crash()
    before = _cartnudge_counts(store.url("snapshot"))["carts_sent"]
    restarted = Child.of("cartnudge-waiter", {"url": store.url("snapshot")}, logdir, {})
    again = restarted.wait_for("done", opts.restart_window)
    restart_fire_s = again["_at"] - restarted.started
    restarted.kill9()
    end = _cartnudge_counts(store.url("snapshot"))
    store.drop("snapshot")
    expected_future = result.scheduled - result.due_scheduled
    result.restart = {
        "killed": killed,
        "kill_reached_half": reached,
        "fired_before_kill": before,
        "fired_after_restart": end["carts_sent"] - before,
        "restart_fire_s": round(restart_fire_s, 3),
        "due_fired_total": end["carts_sent"],
        "due_scheduled": result.due_scheduled,
        "duplicates": end["sends"] - end["carts_sent"],
        "due_never_fired": result.due_scheduled - end["carts_sent"],
        "pending_future_after": end["waiting_future"],
        "pending_future_expected": expected_future,
        "lost": expected_future - end["waiting_future"],
    }
    log(f"{result.label} restart: {result.restart}")
    return result


def run_cartnudge_sqlite(opts: argparse.Namespace, tmp: Path) -> Result:
    return run_cartnudge(opts, tmp, SqliteStore(tmp))


def run_cartnudge_postgres(opts: argparse.Namespace, tmp: Path) -> Result:
    store = PostgresStore(tmp)
    try:
        return run_cartnudge(opts, tmp, store)
    finally:
        store.close()


# ---------------------------------------------------------------------------- Celery


def _celery_worker(redis_url: str, fire_log: Path, logdir: Path, name: str) -> Child:
    # -P solo: the task runs in the worker's own process, so the worker is one process
    # whose RSS holds everything it reserved. No mingle or gossip: there is no other
    # worker to talk to, and mingle would add a second of waiting at start.
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "bench.peer_tasks",
        "worker",
        "-P",
        "solo",
        "--loglevel",
        "WARNING",
        "--without-mingle",
        "--without-gossip",
        "-n",
        f"{name}@%h",
    ]
    env = {REDIS_URL_ENV: redis_url, FIRE_LOG_ENV: str(fire_log)}
    return Child(name, argv, logdir, env)


def _celery_message_reminders(raw_messages: Iterator[bytes], *, unacked: bool) -> set[int]:
    """The reminder numbers in kombu's Redis messages (queue entries, or unacked hash
    values, which wrap the message as [message, exchange, routing key])."""
    ids: set[int] = set()
    for raw in raw_messages:
        message = json.loads(raw)
        if unacked:
            message = json.loads(message[0]) if isinstance(message[0], str) else message[0]
        ids.add(int(message["headers"]["argsrepr"].strip("(),")))
    return ids


def _celery_queue_entries(client: Any, page: int = 10_000) -> Iterator[bytes]:
    # In pages: a million messages in one LRANGE reply would be a gigabyte in this process.
    start = 0
    while True:
        chunk = client.lrange(CELERY_QUEUE, start, start + page - 1)
        yield from chunk
        if len(chunk) < page:
            return
        start += page


def _celery_accounting(
    client: Any, work: Workload, scheduled: int, fired: set[int]
) -> dict[str, int]:
    """Where every reminder is: fired, waiting in the queue, or in the unacked hash
    (reserved by a worker; invisible to every other worker until the visibility timeout),
    and how many are nowhere at all, due and future separately."""
    queued = _celery_message_reminders(_celery_queue_entries(client), unacked=False)
    held = _celery_message_reminders(
        (v for _, v in client.hscan_iter(CELERY_UNACKED, count=10_000)), unacked=True
    )
    # The workload's own count, not the number scheduled: a run stopped by the time limit
    # scheduled the first ``scheduled`` reminders of it, with the workload's spacing.
    due_ids = {i for i in range(0, scheduled, work.stride) if work.is_due(i)}
    missing = due_ids - fired
    nowhere = set(range(scheduled)) - fired - queued - held
    return {
        "due_unfired_in_queue": len(missing & queued),
        "due_unfired_in_unacked": len(missing & held),
        "due_lost": len(nowhere & due_ids),
        "future_in_queue": len(queued - due_ids),
        "future_in_unacked": len(held - due_ids),
        "future_lost": len(nowhere - due_ids),
        # Ran, but its message is still in the unacked hash: after the visibility timeout
        # it goes back to the queue and runs again.
        "ran_but_still_held": len(fired & held),
    }


def run_celery(opts: argparse.Namespace, tmp: Path) -> Result:
    from kombu.transport.redis import Channel

    logdir = tmp / "logs"
    visibility_timeout = Channel.visibility_timeout
    work = Workload(opts.count, opts.due, time.time())
    result = Result(
        "celery",
        "Celery + Redis",
        "`apply_async(eta=…)`; one `celery worker -P solo` (defaults otherwise); Redis 7 "
        "with appendonly yes, appendfsync everysec, no RDB; visibility_timeout "
        f"{visibility_timeout:,} s (kombu's default)",
        opts.count,
        opts.due,
    )
    server = RedisServer(tmp / "redis", logdir)
    server.start()
    env = {REDIS_URL_ENV: server.url}
    try:
        log(f"celery: publishing {opts.count:,} ETA tasks")
        spec = {"workload": asdict(work), "time_limit": opts.time_limit}
        producer = Child.of("celery-produce", spec, logdir, env)
        done = producer.wait_for("done", opts.time_limit + MARGIN_S)
        result.schedule_rss_mib = producer.peak_mib()
        producer.kill9()
        redis_schedule_peak = server.peak_mib()
        server.kill9()  # SIGKILL right after the producer's last publish returned
        result.scheduled, result.due_scheduled = done["scheduled"], done["due_scheduled"]
        result.schedule_s, result.capped = done["seconds"], done["scheduled"] < opts.count
        result.restore_s = round(server.start(), 2)
        client = server.client()
        result.survived_schedule_kill = int(client.llen(CELERY_QUEUE))
        log(
            f"celery: {result.scheduled:,} in {result.schedule_s:.1f} s; after SIGKILL of "
            f"Redis {result.survived_schedule_kill:,} in the queue "
            f"(AOF loaded in {result.restore_s} s)"
        )
        server.stop()
        result.disk_mib = size_mib(tmp / "redis" / "appendonlydir")
        copy_files(tmp, tmp / "redis-snapshot", ["redis"])
        server.start()
        client = server.client()

        # Fire: a worker starts on the full queue. It fires each due task as soon as it
        # reads it, and keeps every future one in memory (ETA tasks are reserved, not left
        # in Redis), so it is timed until the due ones ran, then until the queue is empty.
        fire_log = FireLog(tmp / "celery-fired.log")
        worker = _celery_worker(server.url, fire_log.path, logdir, "celery-worker")
        first: list[float] = []

        all_due_fired = fire_log.reached(worker, result.due_scheduled, first)
        fired_all, waited = poll_until(all_due_fired, opts.fire_limit)
        read = result.scheduled - int(client.llen(CELERY_QUEUE))
        read_rate = read / waited if waited else math.nan
        result.fire_s = waited if fired_all else None
        result.first_fire_s = first[0] if first else None
        result.fired, result.fire_duplicates = len(fire_log.ids), fire_log.duplicates
        log(f"celery: {result.fired:,} due fired in {waited:.1f} s (all: {fired_all})")
        remaining = max(1.0, opts.fire_limit - (time.perf_counter() - worker.started))
        drained, _ = poll_until(lambda: client.llen(CELERY_QUEUE) == 0, remaining, every=0.5)
        drained_s = time.perf_counter() - worker.started
        time.sleep(2)  # the last messages read are being turned into timers
        fire_log.poll()
        info = client.info("memory")
        result.memory_mib = {"redis-server": server.peak_mib(), "celery worker": worker.peak_mib()}
        result.store_mib = {"redis_used_memory": round(info["used_memory"] / 2**20, 1)}
        result.fire_extra = {
            "read_by_worker_when_due_checked": read,
            "worker_read_rate_per_s": round(read_rate, 1),
            # The last due reminder is this far down the queue; at the measured reading
            # rate the worker would reach it after this long (an extrapolation).
            "last_due_extrapolated_s": None
            if fired_all
            else round((result.due_scheduled - 1) * work.stride / read_rate, 1),
            "queue_drained": drained,
            "queue_drained_s": round(drained_s, 1),
            "left_in_queue": int(client.llen(CELERY_QUEUE)),
            "reserved_by_worker": int(client.hlen(CELERY_UNACKED)),
            "duplicates_after_drain": fire_log.duplicates,
            "redis_peak_rss_while_scheduling_mib": redis_schedule_peak,
            "disk_after_fire_mib": size_mib(tmp / "redis" / "appendonlydir"),
        }
        log(f"celery: {result.fire_extra}, memory {result.memory_mib}")
        worker.kill9()
        server.kill9()

        result.restart = _celery_restart(opts, tmp, result, visibility_timeout)
        log(f"celery restart: {result.restart}")
    finally:
        server.kill9()
    return result


def _celery_restart(
    opts: argparse.Namespace, tmp: Path, result: Result, visibility_timeout: int
) -> dict[str, Any]:
    logdir = tmp / "logs"
    shutil.rmtree(tmp / "redis")  # the fire phase's data is done with; disk is not free
    restart_dir = tmp / "redis-restart"
    shutil.move(tmp / "redis-snapshot" / "redis", restart_dir)
    server = RedisServer(restart_dir, logdir)
    try:
        server.start()
        fire_log = FireLog(tmp / "celery-restart-fired.log")
        half = math.ceil(result.due_scheduled / 2)
        worker = _celery_worker(server.url, fire_log.path, logdir, "celery-worker-1")
        reached, _ = poll_until(lambda: fire_log.poll() >= half, opts.fire_limit)
        # SIGKILL to both processes involved: the worker holding its reserved ETA tasks
        # and Redis (whose AOF is fsynced once a second).
        worker.kill9()
        # Counted on the live Redis between the two kills (two O(1) commands, so the
        # second kill still comes within milliseconds): what the worker's death alone lost.
        live = server.client()
        held_live = int(live.llen(CELERY_QUEUE)) + int(live.hlen(CELERY_UNACKED))
        fired_before = fire_log.poll()
        server.kill9()
        live.close()
        restore_s = server.start()
        client = server.client()
        queued_after, unacked_after = (
            int(client.llen(CELERY_QUEUE)),
            int(client.hlen(CELERY_UNACKED)),
        )
        restarted = _celery_worker(server.url, fire_log.path, logdir, "celery-worker-2")
        restarted_at = time.perf_counter()
        last = [fire_log.runs, time.perf_counter()]

        def settled() -> bool:
            n = fire_log.poll()
            if fire_log.runs != last[0]:
                last[:] = [fire_log.runs, time.perf_counter()]
            if n >= result.due_scheduled:
                return True
            # Nothing left to read and nothing fired for a while: what has not run by now
            # is held in the unacked hash until the visibility timeout.
            quiet = time.perf_counter() - last[1] > QUIET_S
            return quiet and client.llen(CELERY_QUEUE) == 0

        poll_until(settled, opts.restart_window)
        waited = time.perf_counter() - restarted_at
        restarted.kill9()
        fire_log.poll()
        work = Workload(result.count, result.due, 0)
        where = _celery_accounting(client, work, result.scheduled, fire_log.ids)
        out = {
            "killed": "the celery worker and redis-server (SIGKILL)",
            "kill_reached_half": reached,
            "fired_before_kill": fired_before,
            # Negative when a reminder that ran was still held (see ran_but_still_held).
            "lost_when_worker_killed": result.scheduled - fired_before - held_live,
            "lost_when_redis_killed": held_live - queued_after - unacked_after,
            "redis_restore_s": round(restore_s, 2),
            "in_queue_after_restart": queued_after,
            "in_unacked_after_restart": unacked_after,
            "fired_after_restart": len(fire_log.ids) - fired_before,
            "watched_after_restart_s": round(waited, 1),
            "due_fired_total": len(fire_log.ids),
            "due_scheduled": result.due_scheduled,
            "duplicates": fire_log.duplicates,
            "due_never_fired": result.due_scheduled - len(fire_log.ids),
            "in_queue_at_end": int(client.llen(CELERY_QUEUE)),
            "in_unacked_at_end": int(client.hlen(CELERY_UNACKED)),
            **where,
            "lost": where["due_lost"] + where["future_lost"],
            "visibility_timeout_s": visibility_timeout,
            "pending_future_expected": result.scheduled - result.due_scheduled,
        }
        client.close()
        return out
    finally:
        server.kill9()


# ----------------------------------------------------------------------- APScheduler


def _apscheduler_rows(db: Path) -> int:
    import sqlite3

    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {APSCHEDULER_TABLE}").fetchone()[0])


def _apscheduler_fire(
    url: str, fire_log: FireLog, logdir: Path, name: str, *, until: int, timeout: float
) -> tuple[Child, bool, float, float | None]:
    """Start a scheduler process; wait until ``until`` reminders fired."""
    child = Child.of("apscheduler-run", {"url": url}, logdir, {FIRE_LOG_ENV: str(fire_log.path)})
    child.name = name
    first: list[float] = []

    reached, waited = poll_until(fire_log.reached(child, until, first), timeout)
    return child, reached, waited, first[0] if first else None


def run_apscheduler(opts: argparse.Namespace, tmp: Path) -> Result:
    logdir = tmp / "logs"
    live, snap = tmp / "apscheduler", tmp / "apscheduler-snapshot"
    live.mkdir()
    db_names = ["jobs.db", "jobs.db-journal"]
    url_of: Callable[[Path], str] = lambda d: f"sqlite:///{d / 'jobs.db'}"  # noqa: E731
    work = Workload(opts.count, opts.due, time.time())
    result = Result(
        "apscheduler",
        "APScheduler (SQLite)",
        "`BackgroundScheduler`, `SQLAlchemyJobStore` on a SQLite file (SQLite's defaults: "
        "rollback journal, synchronous=FULL), default thread pool of 10, "
        "misfire_grace_time=None",
        opts.count,
        opts.due,
    )
    log(f"apscheduler: adding {opts.count:,} jobs")
    spec = {"workload": asdict(work), "url": url_of(live), "time_limit": opts.time_limit}
    sched = Child.of("apscheduler-schedule", spec, logdir, {})
    done = sched.wait_for("done", opts.time_limit + MARGIN_S)
    result.schedule_rss_mib = sched.peak_mib()
    sched.kill9()
    result.scheduled, result.due_scheduled = done["scheduled"], done["due_scheduled"]
    result.schedule_s, result.capped = done["seconds"], done["scheduled"] < opts.count
    result.survived_schedule_kill = _apscheduler_rows(live / "jobs.db")
    log(
        f"apscheduler: {result.scheduled:,} in {result.schedule_s:.1f} s; after SIGKILL "
        f"{result.survived_schedule_kill:,} in the job store"
    )
    result.disk_mib = size_mib(*(live / n for n in db_names))
    copy_files(live, snap, db_names)

    fire_log = FireLog(tmp / "apscheduler-fired.log")
    child, reached, waited, first = _apscheduler_fire(
        url_of(live),
        fire_log,
        logdir,
        "apscheduler-run",
        until=result.due_scheduled,
        timeout=opts.fire_limit,
    )
    result.fire_s = waited if reached else None
    result.first_fire_s = first
    time.sleep(1)  # the last jobs' removal from the store
    fire_log.poll()
    result.memory_mib = {"scheduler process": child.peak_mib()}
    child.kill9()
    result.fired, result.fire_duplicates = len(fire_log.ids), fire_log.duplicates
    result.fire_extra = {
        "left_in_store": _apscheduler_rows(live / "jobs.db"),
        "disk_after_fire_mib": size_mib(*(live / n for n in db_names)),
    }
    log(f"apscheduler: {result.fired:,} due fired in {waited:.1f} s (all: {reached})")

    restart_dir = tmp / "apscheduler-restart"
    copy_files(snap, restart_dir, db_names)
    shutil.rmtree(live)
    fire_log = FireLog(tmp / "apscheduler-restart-fired.log")
    half = math.ceil(result.due_scheduled / 2)
    child, reached, _, _ = _apscheduler_fire(
        url_of(restart_dir), fire_log, logdir, "apscheduler-1", until=half, timeout=opts.fire_limit
    )
    child.kill9()
    fired_before = fire_log.poll()
    rows_after_kill = _apscheduler_rows(restart_dir / "jobs.db")
    child, _, waited, _ = _apscheduler_fire(
        url_of(restart_dir),
        fire_log,
        logdir,
        "apscheduler-2",
        until=result.due_scheduled,
        timeout=opts.restart_window,
    )
    time.sleep(1)
    child.kill9()
    fire_log.poll()
    rows_end = _apscheduler_rows(restart_dir / "jobs.db")
    result.restart = {
        "killed": "the scheduler process (SIGKILL)",
        "kill_reached_half": reached,
        "fired_before_kill": fired_before,
        "in_store_after_kill": rows_after_kill,
        "fired_after_restart": len(fire_log.ids) - fired_before,
        "restart_fire_s": round(waited, 2),
        "due_fired_total": len(fire_log.ids),
        "due_scheduled": result.due_scheduled,
        "duplicates": fire_log.duplicates,
        "due_never_fired": result.due_scheduled - len(fire_log.ids),
        "in_store_at_end": rows_end,
        "pending_future_expected": result.scheduled - result.due_scheduled,
        # Neither run nor still in the store (negative: some ran and are still stored).
        "lost": result.scheduled - len(fire_log.ids) - rows_end,
    }
    log(f"apscheduler restart: {result.restart}")

    # With APScheduler's own default (misfire_grace_time=1 s), what happens to reminders
    # that fell due while the scheduler was down.
    grace_dir = tmp / "apscheduler-grace"
    grace_dir.mkdir()
    grace_log = FireLog(tmp / "apscheduler-grace-fired.log")
    check = Child.of(
        "apscheduler-default-grace",
        {"url": url_of(grace_dir), "count": 200},
        logdir,
        {FIRE_LOG_ENV: str(grace_log.path)},
    )
    verdict = check.wait_for("done", 120)
    check.kill9()
    grace_log.poll()
    result.fire_extra["default_grace_check"] = {
        "jobs_due_60s_ago": verdict["scheduled"],
        "ran": len(grace_log.ids),
        "left_in_store": verdict["left_in_store"],
    }
    log(f"apscheduler default grace: {result.fire_extra['default_grace_check']}")
    return result


# ----------------------------------------------------------------------------- report


def _n(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.2f} s" if value < 10 else f"{value:,.0f} s"


def _survival(r: Result) -> str:
    rs = r.restart or {}
    parts = [f"after scheduling: {_n(r.survived_schedule_kill)} of {_n(r.scheduled)} pending"]
    if rs:
        parts.append(
            f"mid-fire: due fired {_n(rs['due_fired_total'])}/{_n(rs['due_scheduled'])} "
            f"({_n(rs['duplicates'])} twice), {_n(rs['lost'])} lost"
        )
        if r.system == "celery":
            if rs["due_unfired_in_queue"]:
                parts.append(
                    f"{_n(rs['due_unfired_in_queue'])} due still queued after "
                    f"{_n(rs['watched_after_restart_s'])} s"
                )
            parts.append(
                f"{_n(rs['in_unacked_at_end'])} reserved by the killed workers, invisible "
                f"for {rs['visibility_timeout_s']:,} s"
            )
    return "; ".join(parts)


def table(results: list[Result]) -> list[str]:
    rows = [
        "| system | scheduled | schedule time | schedule rate | memory (peak RSS) | disk "
        "| fire the due ones | survived kill -9 + restart |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        capped = " (time limit)" if r.capped else ""
        memory = " + ".join(f"{k} {_n(v)}" for k, v in (r.memory_mib or {}).items())
        memory_total = f"**{_n(r.memory_total_mib)} MiB**" + (
            f" ({memory})" if len(r.memory_mib or {}) > 1 else ""
        )
        guess = (r.fire_extra or {}).get("last_due_extrapolated_s")
        fire = (
            f"{_seconds(r.fire_s)} ({_n(r.fired)} due)"
            if r.fire_s is not None
            else f"{_n(r.fired)} of {_n(r.due_scheduled)} due in the {_n(r.fire_limit)} s limit"
            + (f"; all after ≈ {_n(guess)} s (extrapolated)" if guess else "")
        )
        rows.append(
            f"| {r.label} | {_n(r.scheduled)}{capped} | {_seconds(r.schedule_s)} "
            f"| {_n(r.schedule_rate)}/s | {memory_total} | {_n(r.disk_mib)} MiB | {fire} "
            f"| {_survival(r)} |"
        )
    return rows


def ratios(results: list[Result]) -> list[str]:
    """Each peer against cartnudge. A peer stopped by the time limit holds fewer
    reminders, so what grows with the count is compared per reminder (schedule time, disk)
    or per due reminder (fire time); memory is compared as measured, at the counts held,
    because cartnudge's does not grow with the count and the peers' does."""
    base = next((r for r in results if r.system == "cartnudge"), None)
    if base is None:
        return []
    lines = []
    for r in results:
        if r is base or not r.scheduled or not base.scheduled:
            continue
        per_base = base.schedule_s / base.scheduled
        per_peer = r.schedule_s / r.scheduled
        parts = [f"schedule time per reminder ×{per_peer / per_base:,.1f}"]
        if r.memory_total_mib and base.memory_total_mib:
            parts.append(f"memory ×{r.memory_total_mib / base.memory_total_mib:,.1f}")
        if r.disk_mib and base.disk_mib:
            ratio = (r.disk_mib / r.scheduled) / (base.disk_mib / base.scheduled)
            parts.append(f"disk per reminder ×{ratio:,.2f}")
        guess = (r.fire_extra or {}).get("last_due_extrapolated_s")
        if base.fire_s and base.fired and r.due_scheduled:
            per_due_base = base.fire_s / base.fired
            if r.fire_s:
                ratio = (r.fire_s / r.due_scheduled) / per_due_base
                parts.append(f"time to fire per due reminder ×{ratio:,.1f}")
            else:
                floor = (r.fire_limit / r.due_scheduled) / per_due_base
                parts.append(
                    f"time to fire per due reminder > ×{floor:,.0f} (not all in the limit"
                    + (
                        f"; ≈ ×{(guess / r.due_scheduled) / per_due_base:,.0f} extrapolated)"
                        if guess
                        else ")"
                    )
                )
        scale = (
            ""
            if r.scheduled == base.scheduled
            else f" (holding {r.scheduled:,} against {base.scheduled:,})"
        )
        lines.append(f"- {r.label} / cartnudge{scale}: " + ", ".join(parts))
    return lines


def details(results: list[Result], opts: argparse.Namespace) -> list[str]:
    lines: list[str] = []
    for r in results:
        lines.append(f"**{r.label}**: {r.setup}.")
        if r.capped:
            lines.append(
                f"  Scheduling stopped at the {opts.time_limit:,.0f} s limit with "
                f"{r.scheduled:,} of {r.count:,}; *extrapolated* at the same rate, "
                f"{r.count:,} would take {r.count / r.schedule_rate:,.0f} s."
            )
        lines.append(
            f"  Scheduling process peak RSS {_n(r.schedule_rss_mib)} MiB"
            + (f"; Redis reloaded its AOF in {r.restore_s} s" if r.restore_s else "")
            + (f"; Redis used_memory {r.store_mib['redis_used_memory']} MiB" if r.store_mib else "")
            + (f"; first due fired {r.first_fire_s:.2f} s after start" if r.first_fire_s else "")
            + "."
        )
        if r.fire_extra:
            lines.append(f"  Fire phase: `{json.dumps(r.fire_extra, default=str)}`.")
        if r.restart:
            lines.append(f"  Restart: `{json.dumps(r.restart)}`.")
        lines.append("")
    return lines


def render(results: list[Result], opts: argparse.Namespace, meta: dict[str, Any]) -> str:
    out = [
        f"# Peers, {opts.count:,} pending reminders, {opts.due:,} of them due",
        "",
        f"Run at {meta['finished']} ({meta['wall_s']:,.0f} s), load average at start "
        f"{meta['machine']['load_average_at_start']}, at the end "
        f"{meta.get('load_average_at_end')}; time limits: scheduling "
        f"{opts.time_limit:,.0f} s, firing {opts.fire_limit:,.0f} s, watching a restarted "
        f"system {opts.restart_window:,.0f} s. Memory is the peak RSS (VmHWM) during the "
        "fire phase of every process involved; disk is the store's size right after "
        "scheduling; fire time is from the firing process's start until every due reminder "
        "ran (cartnudge: was enqueued by the waiter).",
        "",
        *table(results),
        "",
        *ratios(results),
        "",
        *details(results, opts),
    ]
    return "\n".join(out) + "\n"


def versions() -> dict[str, str | None]:
    from importlib import metadata

    found: dict[str, str | None] = {}
    for name in ("celery", "kombu", "redis", "apscheduler", "sqlalchemy"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    done = subprocess.run(
        [REDIS_SERVER, "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    found["redis-server"] = done.stdout.strip()
    return found


RUNNERS: dict[str, Callable[[argparse.Namespace, Path], Result]] = {
    "cartnudge": run_cartnudge_sqlite,
    "cartnudge-pg": run_cartnudge_postgres,
    "celery": run_celery,
    "apscheduler": run_apscheduler,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--only", default=",".join(SYSTEMS))
    parser.add_argument(
        "--time-limit",
        type=float,
        default=600.0,
        help="seconds a system may take to schedule (default 600: the issue's ten minutes)",
    )
    parser.add_argument(
        "--fire-limit",
        type=float,
        default=None,
        help="seconds a system may take to fire the due ones, and to reach the mid-fire "
        "kill of the restart test (default: --time-limit)",
    )
    parser.add_argument(
        "--restart-window",
        type=float,
        default=120.0,
        help="seconds to watch a restarted system fire the rest (default 120)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="only write the markdown again from a results JSON (after correcting it)",
    )
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.fire_limit is None:
        opts.fire_limit = opts.time_limit
    if opts.child:
        CHILDREN[opts.child](json.loads(opts.spec))
        return
    if opts.render:
        rerender(opts.render)
        return
    chosen = [s.strip() for s in opts.only.split(",") if s.strip()]
    unknown = set(chosen) - set(SYSTEMS)
    if unknown or not chosen:
        parser.error(f"--only takes {', '.join(SYSTEMS)}")
    if not 1 <= opts.due <= opts.count:
        parser.error("--due must be between 1 and --count")

    from bench import machine

    meta: dict[str, Any] = {"machine": machine.describe(), "versions": versions()}
    started = time.perf_counter()
    results: list[Result] = []
    # Nothing may outlive the run: the children are ended on any exit, SIGTERM included.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="cartnudge-peers-"))
    (tmp / "logs").mkdir()
    ok = False
    try:
        for system in chosen:
            folder = _fresh(tmp, system)
            results.append(RUNNERS[system](opts, folder))
            results[-1].fire_limit = opts.fire_limit
            shutil.rmtree(folder)  # a million reminders' state is gigabytes; free it now
        ok = True
    finally:
        end_all()
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            for folder in tmp.iterdir():
                if folder.name != "logs":
                    shutil.rmtree(folder, ignore_errors=True)
            log(f"failed; the processes' logs are in {tmp / 'logs'}")
    meta["finished"] = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    meta["wall_s"] = time.perf_counter() - started
    meta["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    text = render(results, opts, meta)
    print(text)
    out: Path = opts.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    document = {
        **meta,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
        "results": [r.as_dict() for r in results],
    }
    out.with_suffix(".json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    log(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")


def rerender(path: Path) -> None:
    """The markdown of a results JSON, written next to it."""
    document = json.loads(path.read_text())
    names = {f.name for f in fields(Result)}
    results = [Result(**{k: v for k, v in r.items() if k in names}) for r in document["results"]]
    opts = argparse.Namespace(**document["options"])
    text = render(results, opts, document)
    print(text)
    path.with_suffix(".md").write_text(text)


def _fresh(tmp: Path, system: str) -> Path:
    """A folder of its own per system, sharing the one log folder."""
    folder = tmp / system
    folder.mkdir()
    (folder / "logs").symlink_to(tmp / "logs")
    return folder


if __name__ == "__main__":
    main()
