"""What the intake fault tests share: ``cartnudge serve`` as a child process that a test
kills and starts again on the same database, a steady load of signed storefront deliveries
that retries like a real sender, and reading back what was stored.

A delivery is *acknowledged* when the sender got a 2xx for it; the sender retries
everything else (503, a connection refused or cut by a kill, a timeout) with the same
message id until it is acknowledged, as Standard Webhooks senders do. A retry answered
``duplicate`` means the delivery had been committed by an attempt whose answer was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import httptools
import orjson
import pytest
from sqlalchemy import text

from cartnudge.clock import system_clock
from cartnudge.db.engine import make_engine
from cartnudge.db.migrate import upgrade
from cartnudge.db.session import writing
from cartnudge.intake.examples import storefront_event
from cartnudge.intake.signatures import sign_standard
from cartnudge.shops.service import add_shop
from cartnudge.testing.postgres import free_port
from cartnudge.testing.serve import wait_healthy

CARTNUDGE = str(Path(sys.executable).parent / "cartnudge")
SLUG = "chaos"
START_TIMEOUT_S = 60.0  # a slow, shared machine: `serve` usually starts in 2-3 s
STOP_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 20.0  # an answer slower than this counts as no answer (and is retried)
RETRY_PAUSE_S = 0.1  # a sender's pause after a 503 or a failed connection
POLL_S = 0.005
WRITER_MODULE = "cartnudge.intake.writer_process"


def past(instant: float) -> bool:
    """``time.monotonic()`` has passed ``instant``."""
    return time.monotonic() > instant


RECOVERY_TIMEOUT_S = 60.0  # from a restart to acknowledgements flowing again


def wait_until(
    condition: Callable[[], bool],
    timeout_s: float,
    what: str,
    *,
    log: Callable[[], str] | None = None,
) -> None:
    """Poll ``condition`` until it holds; fail the test saying ``what`` did not happen
    (with the server's latest log lines, if given a way to read them)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s: {what}\n{log() if log else ''}")
        time.sleep(POLL_S)


# -- cartnudge serve ----------------------------------------------------------------------
def serve_env(home: Path, database_url: str | None = None) -> dict[str, str]:
    """The environment of every ``cartnudge`` command a test runs: its own home (SQLite
    lives there unless ``database_url`` says otherwise) and the session's data key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTNUDGE_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # each restart would compile every import
    env["CARTNUDGE_DATA_KEYS"] = os.environ["CARTNUDGE_DATA_KEYS"]
    env["CARTNUDGE_HOME"] = str(home)
    if database_url is not None:
        env["CARTNUDGE_DATABASE_URL"] = database_url
    return env


def create_shop(database_url: str) -> str:
    """Migrate the database and add the shop the load sends to (in this process: a
    ``cartnudge shop add`` would cost another interpreter start); its storefront secret."""
    engine = make_engine(database_url, pool_size=1)
    try:
        upgrade(engine)
        with writing(engine) as conn:
            shop = add_shop(
                conn, slug=SLUG, name="Chaos", timezone="UTC", currency="USD", now=system_clock()
            )
    finally:
        engine.dispose()
    return shop.storefront_secrets[0]


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def gone(pid: int) -> bool:
    """The process has exited (a zombie nobody reaped counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in {"Z", "X"}


class Served:
    """``cartnudge serve`` on one database and one port, started again after each kill.

    Every process it starts, and every ingest writer those start, is killed at ``close``
    if it is still there."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = dict(env)
        self.logs = logs
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.started: list[subprocess.Popen[bytes]] = []
        self.writers: set[int] = set()  # every ingest writer pid seen
        self.socket_dirs: set[Path] = set()  # their sockets' folders (a killed serve leaves them)
        self.orphans: set[int] = set()  # writers whose serve was killed under them

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}/webhooks/storefront/{SLUG}"

    def log_tail(self, lines: int = 40) -> str:
        if not self.started:
            return ""
        path = self.logs / f"serve-{len(self.started) - 1}.log"
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def start(self) -> None:
        """Start serve and wait until it answers ``/healthz``."""
        self.env["CARTNUDGE_PUBLIC_URL"] = self.base_url
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"serve-{len(self.started)}.log").open("wb") as log:
            process = subprocess.Popen(
                [CARTNUDGE, "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.started.append(process)
        self.process = process
        if not wait_healthy(self.base_url, process, START_TIMEOUT_S):
            pytest.fail(f"serve did not start (exit code {process.poll()}):\n{self.log_tail()}")
        self.current_writers()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def current_writers(self) -> list[int]:
        """The ingest writer(s) the running serve has now."""
        if not self.alive():
            return []
        assert self.process is not None
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and _parent_of(int(entry.name)) == self.process.pid:
                pid = int(entry.name)
                command = _cmdline(pid).split()
                if WRITER_MODULE in command and not gone(pid):
                    found.append(pid)
                    if "--socket" in command[:-1]:
                        socket = Path(command[command.index("--socket") + 1])
                        self.socket_dirs.add(socket.parent)
        self.writers.update(found)
        return found

    def kill_web(self, *, with_writer: bool = False) -> None:
        """SIGKILL the serve process (and its writer at the same moment, if asked)."""
        assert self.process is not None
        writers = self.current_writers()
        for pid in writers if with_writer else []:
            os.kill(pid, signal.SIGKILL)
        self.process.kill()
        self.process.wait(timeout=STOP_TIMEOUT_S)
        if not with_writer:
            self.orphans.update(writers)

    def kill_writer(self) -> None:
        """SIGKILL the ingest writer; serve is to notice and start another."""
        writers = self.current_writers()
        assert writers, "serve has no ingest writer to kill"
        for pid in writers:
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> int | None:
        """Ctrl-C, as an operator would: in-flight requests are answered, then it exits."""
        process = self.process
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGINT)
        try:
            return process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)
            pytest.fail("serve did not stop on Ctrl-C")

    def close(self) -> None:
        """Kill whatever is still running: every serve started and every writer seen."""
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        for pid in self.writers:
            # Only if that pid is still one of our writers (not a reused pid).
            if not gone(pid) and WRITER_MODULE in _cmdline(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for folder in self.socket_dirs:
            if folder.name.startswith("cartnudge-"):  # WriterProcess's private folder
                shutil.rmtree(folder, ignore_errors=True)


# -- the senders --------------------------------------------------------------------------
class _Connection(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection with at most one request outstanding: raw bytes
    out, httptools' C parser in (as in bench/loadgen.py), so that the senders cost little
    CPU next to the server they share two cores with."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.body = bytearray()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)
            self.close()

    def on_body(self, body: bytes) -> None:  # httptools callback
        self.body += body

    def on_message_complete(self) -> None:  # httptools callback
        waiter, self.waiter = self.waiter, None
        answer, self.body = bytes(self.body), bytearray()
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), answer))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionResetError("connection closed by the server"))

    def _fail(self, exc: BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def send(self, raw: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None and self.waiter is None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


@dataclass(frozen=True, slots=True)
class Answer:
    sent_at: float  # time.monotonic() before the request left
    answered_at: float  # after its answer (or its failure) came back
    status: int  # 0: no answer (refused, cut, timed out)


class SteadyLoad:
    """Signed storefront deliveries at a steady rate, each for a new cart, sent by
    ``concurrency`` senders in a thread of their own; each is retried until acknowledged.
    While more than ``backlog`` deliveries wait for acknowledgement no new ones are made,
    so a slow machine makes the load smaller, not the test longer.

    The test's thread reads the counters while it kills things; only the load's thread
    writes them."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        rate: float,
        concurrency: int,
        tag: str,
        backlog: int,
    ) -> None:
        self.url = url
        self.secret = secret
        self.rate = rate
        self.concurrency = concurrency
        self.tag = tag
        self.backlog = backlog
        self.bodies: dict[str, bytes] = {}  # message id -> body, in the order made
        self.tries: Counter[str] = Counter()
        self.acked: set[str] = set()
        self.duplicates: set[str] = set()  # acknowledged as "duplicate" on a retry
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.answers: list[Answer] = []
        self.surprises: list[str] = []  # answers no sender should ever get
        self.in_flight = 0
        self._producing = True
        self._done = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="steady-load", daemon=True)

    # -- from the test's thread ----------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    @property
    def made(self) -> int:
        return len(self.bodies)

    def has_acked(self, count: int) -> bool:
        return len(self.acked) >= count

    def answered(self, status: int, *, sent_after: float) -> int:
        """How many attempts sent after that instant got ``status`` (0: no answer)."""
        return sum(1 for a in list(self.answers) if a.status == status and a.sent_at >= sent_after)

    def got(self, status: int, count: int, *, sent_after: float) -> bool:
        """At least ``count`` attempts sent after that instant got ``status``."""
        return self.answered(status, sent_after=sent_after) >= count

    def first_answer(self, status: int, *, sent_after: float) -> float:
        """When the first attempt sent after that instant got ``status``."""
        return min(
            a.answered_at
            for a in list(self.answers)
            if a.status == status and a.sent_at >= sent_after
        )

    def in_window(self, sent_after: float, answered_by: float) -> Counter[int]:
        """Statuses of the attempts sent and answered within the window."""
        return Counter(
            a.status
            for a in list(self.answers)
            if a.sent_at >= sent_after and a.answered_at <= answered_by
        )

    def finish(self, timeout_s: float) -> None:
        """Make no more deliveries; go on retrying until every one is acknowledged."""
        self._producing = False
        deadline = time.monotonic() + timeout_s
        while len(self.acked) < self.made and self._thread.is_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        self.close()
        missing = self.made - len(self.acked)
        assert missing == 0, (
            f"{missing} of {self.made} deliveries never acknowledged in {timeout_s:.0f} s "
            f"of retries (statuses {dict(self.statuses)}, errors {dict(self.errors)})"
        )

    def close(self) -> None:
        """Stop every sender (idempotent); re-raise what broke the load's thread."""
        self._producing = False
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the load's thread did not stop"
        if self._failure is not None:
            raise self._failure

    # -- in the load's thread ------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # handed to the test's thread by close()
            self._failure = exc

    async def _main(self) -> None:
        queue: asyncio.Queue[str] = asyncio.Queue()
        tasks = [asyncio.create_task(self._produce(queue))]
        tasks += [asyncio.create_task(self._send(queue)) for _ in range(self.concurrency)]
        try:
            while not self._done.is_set():
                for task in tasks:  # the producer ends when told to; nothing else does
                    if task.done() and not task.cancelled() and task.exception():
                        raise RuntimeError("a sender died") from task.exception()
                await asyncio.sleep(0.01)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _produce(self, queue: asyncio.Queue[str]) -> None:
        """Delivery i is due at start + i / rate, whatever the server is doing (unless the
        backlog is full: then the schedule starts again when there is room)."""
        start = time.monotonic()
        index = made = 0
        while self._producing:
            if self.made - len(self.acked) >= self.backlog:
                await asyncio.sleep(0.05)
                start, made = time.monotonic(), 0
                continue
            delay = start + made / self.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            msg_id = f"{self.tag}-{index}"
            event = storefront_event(cart_id=msg_id, occurred_at=datetime.now(UTC))
            self.bodies[msg_id] = orjson.dumps(event)
            queue.put_nowait(msg_id)
            index += 1
            made += 1

    def _request(self, msg_id: str) -> tuple[str, int, bytes]:
        """Host, port and the raw request, signed now (a retry is signed again)."""
        url = urlsplit(self.url)
        assert url.hostname is not None and url.port is not None
        body = self.bodies[msg_id]
        headers = sign_standard(body, msg_id, self.secret, int(time.time()))
        lines = [f"POST {url.path} HTTP/1.1", f"host: {url.netloc}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines += ["content-type: application/json", f"content-length: {len(body)}"]
        return url.hostname, url.port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def _send(self, queue: asyncio.Queue[str]) -> None:
        loop = asyncio.get_running_loop()
        conn: _Connection | None = None
        try:
            while True:
                msg_id = await queue.get()
                host, port, raw = self._request(msg_id)
                self.tries[msg_id] += 1
                self.in_flight += 1
                sent_at = time.monotonic()
                status, answer = 0, b""
                try:
                    if conn is None or conn.closed:
                        _, conn = await asyncio.wait_for(
                            loop.create_connection(_Connection, host, port), CONNECT_TIMEOUT_S
                        )
                    assert conn is not None
                    status, answer = await asyncio.wait_for(conn.send(raw), REQUEST_TIMEOUT_S)
                except (OSError, TimeoutError, httptools.HttpParserError) as exc:
                    self.errors[type(exc).__name__] += 1
                    if conn is not None:
                        conn.close()
                        conn = None
                finally:
                    self.in_flight -= 1
                self.answers.append(Answer(sent_at, time.monotonic(), status))
                if status:
                    self.statuses[status] += 1
                if 200 <= status < 300:
                    self._acknowledged(msg_id, answer)
                    continue
                if status not in (0, 503):
                    self.surprises.append(f"{msg_id}: {status} {answer[:200]!r}")
                await asyncio.sleep(RETRY_PAUSE_S)
                queue.put_nowait(msg_id)
        finally:
            if conn is not None:
                conn.close()

    def _acknowledged(self, msg_id: str, answer: bytes) -> None:
        try:
            outcome = orjson.loads(answer).get("status")
        except orjson.JSONDecodeError:
            outcome = None
        if msg_id in self.acked:
            self.surprises.append(f"{msg_id}: acknowledged twice")
        self.acked.add(msg_id)
        if outcome == "duplicate":
            if self.tries[msg_id] == 1:
                self.surprises.append(f"{msg_id}: a first attempt answered 'duplicate'")
            self.duplicates.add(msg_id)
        elif outcome != "applied":
            self.surprises.append(f"{msg_id}: 2xx with outcome {outcome!r}: {answer[:200]!r}")


# -- what was stored ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Stored:
    events: dict[str, str]  # storefront message id -> inbox status
    carts: int


def stored(database_url: str) -> Stored:
    """The chaos shop's storefront inbox rows and its number of carts."""
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            shop_id = conn.execute(
                text("SELECT id FROM shops WHERE slug = :slug"), {"slug": SLUG}
            ).scalar_one()
            rows = conn.execute(
                text(
                    "SELECT external_id, status FROM inbox_events"
                    " WHERE shop_id = :shop AND source = 'storefront'"
                ),
                {"shop": shop_id},
            ).all()
            carts = conn.execute(
                text("SELECT count(*) FROM carts WHERE shop_id = :shop"), {"shop": shop_id}
            ).scalar_one()
    finally:
        engine.dispose()
    return Stored({str(r.external_id): str(r.status) for r in rows}, int(carts))


def sqlite_url(home: Path) -> str:
    return f"sqlite:///{home / 'cartnudge.db'}"


def a_random_moment(load: SteadyLoad, served: Served, rng: random.Random, cycle: int) -> int:
    """Wait for a random moment with deliveries flowing: a random number more
    acknowledgements (up to about a second's worth), with requests in flight. Returns how
    many were in flight."""
    target = len(load.acked) + rng.randint(1, int(load.rate))
    wait_until(
        partial(load.has_acked, target),
        RECOVERY_TIMEOUT_S,
        f"cycle {cycle}: acknowledgements did not resume",
        log=served.log_tail,
    )
    wait_until(lambda: load.in_flight > 0, 10, "no request in flight")
    return load.in_flight
