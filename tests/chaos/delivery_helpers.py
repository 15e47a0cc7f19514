"""What the delivery half of the fault suite shares: a fresh database per test, a sending
shop, carts written straight into the cart list, an SMTP server that stamps when it
accepted each email and from which connection, and real ``cartnudge worker`` processes.

The workers are the ``cartnudge worker`` command itself, run in a Python child process
that first shortens some of the loop's timing constants (the sender's lease and heartbeat,
the worker's poll interval). Those are module constants, not settings, so a test cannot
shorten them any other way without editing ``src/``; everything else is the product as
an operator runs it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import IO, Any

from aiosmtpd.smtp import Envelope, Session
from sqlalchemy import Engine, func, select

from cartnudge.db.models import Cart, CartKey, Send
from cartnudge.db.session import reading, writing
from cartnudge.shops.repository import ShopRecord
from cartnudge.shops.service import add_shop
from cartnudge.shops.versioned import set_document
from cartnudge.testing.smtp import SmtpSink
from cartnudge.timing.service import RULES

carts_t = Cart
cart_keys_t = CartKey
sends_t = Send

CARTNUDGE = str(Path(sys.executable).parent / "cartnudge")
SIGNING_KEY = "chaos-signing-key"
SENDER = "Tea House <hello@tea.example>"
POSTAL_ADDRESS = "1 Leaf Lane\nBristol BS1 1AA\nUnited Kingdom"
WAIT = timedelta(hours=1)  # the one wait of the rules below: due one hour after activity
# One reminder per cart, an hour after the last activity, at any hour of the day: the
# tests run on the real clock, whenever CI runs them, so quiet hours must not defer them.
RULES_TEXT = """\
tiers:
  - {name: any, from: 0, waits: [1h]}
steps: 1
give_up_after: 2d
quiet_hours: null
consent: require_opt_in
"""
READY_TIMEOUT_S = 60.0  # a worker or web process on a busy 2-core machine
STOP_TIMEOUT_S = 30.0  # a stopped worker finishes the batch in hand first

# The child process: shorten the loop's timing constants, then run `cartnudge worker`.
_WORKER = """\
import sys
from datetime import timedelta

from cartnudge import worker
from cartnudge.delivery import sender

lease_s, heartbeat_s, poll_s = (float(arg) for arg in sys.argv[1:4])
if lease_s > 0:
    sender.LEASE = timedelta(seconds=lease_s)
if heartbeat_s > 0:
    sender.HEARTBEAT_S = heartbeat_s
if poll_s > 0:
    worker.POLL_INTERVAL_S = poll_s

from cartnudge.cli import app

app(["worker"], prog_name="cartnudge")
"""
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*<(\d+)\.", re.IGNORECASE | re.MULTILINE)


def utcnow() -> datetime:
    return datetime.now(UTC)


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout_s:.0f} s: {what}")
        time.sleep(0.05)


# -- the SMTP server ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arrival:
    """One email the SMTP server accepted: when (this process's monotonic and wall clocks,
    taken as it accepted), from which client port, for which send (its Message-ID)."""

    mono: float
    wall: float
    peer_port: int | None
    send_id: int | None
    rcpt: tuple[str, ...]


class TimedSink(SmtpSink):
    """``SmtpSink``, stamping each email as it accepts it. With ``delay_s`` it is a slow
    relay: it takes ``delay_s`` over each email before accepting it, one at a time (the
    server's loop is busy meanwhile), so a batch is in the lanes for a while."""

    def __init__(self, *, delay_s: float = 0.0) -> None:
        super().__init__()
        self.delay_s = delay_s
        self._arrivals: list[Arrival] = []
        self._arrived = threading.Condition()

    def _record(self, envelope: Envelope, session: Session) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)
        mono, wall = time.monotonic(), time.time()
        super()._record(envelope, session)
        peer: object = session.peer  # (host, port), though typed as a string
        port = peer[1] if isinstance(peer, tuple) and len(peer) >= 2 else None
        found = _MESSAGE_ID.search(envelope.original_content or b"")
        arrival = Arrival(
            mono,
            wall,
            port if isinstance(port, int) else None,
            int(found.group(1)) if found else None,
            tuple(envelope.rcpt_tos),
        )
        with self._arrived:
            self._arrivals.append(arrival)
            self._arrived.notify_all()

    def __enter__(self) -> TimedSink:
        self.start()
        return self

    @property
    def arrivals(self) -> list[Arrival]:
        with self._arrived:
            return list(self._arrivals)

    def count(self) -> int:
        with self._arrived:
            return len(self._arrivals)

    def wait_count(self, count: int, timeout_s: float) -> Arrival:
        """Wait until ``count`` emails arrived; the ``count``-th."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self._arrivals) >= count, timeout_s):
                raise TimeoutError(
                    f"{len(self._arrivals)} of {count} emails arrived within {timeout_s} s"
                )
            return self._arrivals[count - 1]


def send_id_counts(arrivals: list[Arrival]) -> Counter[int]:
    """Emails received per send (the Message-ID carries the send's id)."""
    missing = [a for a in arrivals if a.send_id is None]
    assert not missing, f"{len(missing)} emails without a cartnudge Message-ID"
    return Counter(a.send_id for a in arrivals if a.send_id is not None)


# -- the database -------------------------------------------------------------------------


def add_sending_shop(
    engine: Engine,
    mail_port: int,
    *,
    shopify_domain: str | None = None,
    shopify_secret: str | None = None,
) -> ShopRecord:
    """A shop that sends by SMTP to 127.0.0.1:``mail_port``, with ``RULES_TEXT``."""
    now = utcnow()
    with writing(engine) as conn:
        shop = add_shop(
            conn,
            slug="tea",
            name="Tea House",
            timezone="Europe/London",
            currency="EUR",
            now=now,
            activated_at=datetime(2000, 1, 1, tzinfo=UTC),
            sender=SENDER,
            postal_address=POSTAL_ADDRESS,
            mail_url=f"smtp://127.0.0.1:{mail_port}",
            shopify_domain=shopify_domain,
            shopify_secret=shopify_secret,
            holdout_percent=0,  # every due cart is sent: the test counts them
        )
        set_document(conn, RULES, shop, RULES_TEXT, now, actor="test")
    return shop


@dataclass(frozen=True, slots=True)
class NewCart:
    id: int
    email: str
    checkout_token: str


def insert_carts(
    engine: Engine, shop_id: int, count: int, *, tag: str, due_at: datetime | None
) -> list[NewCart]:
    """``count`` open, opted-in carts, each with its own address and a Shopify checkout
    token, last active ``WAIT`` before ``due_at`` (no timer when ``due_at`` is None)."""
    active = (due_at or utcnow()) - WAIT
    rows: list[dict[str, Any]] = [
        {
            "shop_id": shop_id,
            "status": "open",
            "source": "shopify",
            "items": [{"title": "Blue enamel mug", "quantity": 1, "unit_price_minor": 6400}],
            "currency": "EUR",
            "total_minor": 6400,
            "email": f"{tag}-{n}@shoppers.example",
            "email_key": f"{tag}-{n}@shoppers.example",
            "first_name": "Alex",
            "accepts_marketing": True,
            "consent_source": "checkout",
            "return_url": f"https://shop.example/cart/{tag}-{n}",
            "saved_link": False,
            "first_activity_at": active,
            "last_activity_at": active,
            "next_wake_at": due_at,
            "versions": {},
            "created_at": active,
            "updated_at": active,
            "reminders_sent": 0,
        }
        for n in range(count)
    ]
    with writing(engine) as conn:
        returned = conn.execute(
            carts_t.insert().returning(carts_t.c.id, carts_t.c.email, sort_by_parameter_order=True),
            rows,
        ).all()
        made = [NewCart(r.id, r.email, f"chk-{tag}-{n}") for n, r in enumerate(returned)]
        conn.execute(
            cart_keys_t.insert(),
            [
                {"shop_id": shop_id, "kind": "shopify_checkout", "value": c.checkout_token,
                 "cart_id": c.id}
                for c in made
            ],
        )  # fmt: skip
    return made


def status_counts(engine: Engine) -> Counter[str]:
    with reading(engine) as conn:
        rows = conn.execute(select(sends_t.c.status, func.count()).group_by(sends_t.c.status))
        return Counter({status: n for status, n in rows})


def send_rows(
    engine: Engine,
) -> dict[int, tuple[int, int, str, str | None, datetime | None, datetime | None]]:
    """Every send: id -> (cart id, step, status, reason, sent_at, handed_at)."""
    with reading(engine) as conn:
        rows = conn.execute(
            select(
                sends_t.c.id,
                sends_t.c.cart_id,
                sends_t.c.step,
                sends_t.c.status,
                sends_t.c.reason,
                sends_t.c.sent_at,
                sends_t.c.handed_at,
            )
        )
        return {r.id: (r.cart_id, r.step, r.status, r.reason, r.sent_at, r.handed_at) for r in rows}


# -- processes ----------------------------------------------------------------------------


def child_env(database_url: str, home: Path) -> dict[str, str]:
    """The environment of a cartnudge process of this test: its database, a data folder
    of its own, the test session's data key (to open the shop's sealed mail route)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTNUDGE_")}
    env.update(
        CARTNUDGE_DATABASE_URL=database_url,
        CARTNUDGE_HOME=str(home),
        CARTNUDGE_DATA_KEYS=os.environ["CARTNUDGE_DATA_KEYS"],
        CARTNUDGE_SECRET_KEY=SIGNING_KEY,
        CARTNUDGE_PUBLIC_URL="http://127.0.0.1:9",
        CARTNUDGE_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


class Child:
    """A child process whose output goes to a file; stopped for sure by ``stop``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log_path = log
        self._out: IO[bytes] = log.open("wb")
        self.process = subprocess.Popen(argv, env=env, stdout=self._out, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill9(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT_S)
        self._out.close()

    def stop(self) -> int:
        """SIGTERM, and SIGKILL if it has not exited within ``STOP_TIMEOUT_S``."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
        self._out.close()
        return self.process.returncode


class Workers:
    """``cartnudge worker`` processes in numbered slots; a killed one is restarted in its
    slot. Leaving the context stops every one still running (SIGTERM, then SIGKILL)."""

    def __init__(
        self,
        env: dict[str, str],
        logs: Path,
        *,
        lease_s: float = 0,
        heartbeat_s: float = 0,
        poll_s: float = 0,
    ) -> None:
        self.env = env
        self.logs = logs
        self.timing = [str(lease_s), str(heartbeat_s), str(poll_s)]
        self.slots: dict[int, Child] = {}
        self.started = 0
        self.stopped: list[Child] = []

    def start(self, slot: int) -> Child:
        self.started += 1
        argv = [sys.executable, "-c", _WORKER, *self.timing]
        log = self.logs / f"worker-{self.started}-slot{slot}.log"
        child = self.slots[slot] = Child(f"worker {self.started}", argv, self.env, log)
        return child

    def wait_ready(self) -> None:
        for child in self.slots.values():
            wait_until(partial(_started, child), READY_TIMEOUT_S, f"{child.name} to start")
            assert child.alive(), f"{child.name} exited: {child.output()}"

    def owner_of(self, port: int) -> tuple[int, Child] | None:
        """The slot and worker whose socket has local TCP port ``port``."""
        for slot, child in self.slots.items():
            if child.alive() and port in local_ports(child.pid):
                return slot, child
        return None

    def stop_all(self) -> list[Child]:
        """Stop every worker (they finish the batch in hand); the ones stopped."""
        stopped = []
        for child in self.slots.values():
            child.stop()
            stopped.append(child)
        self.stopped += stopped
        self.slots = {}
        return stopped

    def __enter__(self) -> Workers:
        self.logs.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        for child in self.slots.values():
            with contextlib.suppress(Exception):
                child.stop()
        self.slots = {}


def _started(child: Child) -> bool:
    return "worker running" in child.output() or not child.alive()


def local_ports(pid: int) -> set[int]:
    """The local ports of the IPv4 TCP sockets process ``pid`` holds (Linux ``/proc``)."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                target = str(fd.readlink())
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports = set()
    with Path("/proc/net/tcp").open() as table:
        next(table)
        for line in table:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def start_web(env: dict[str, str], logs: Path) -> tuple[Child, str]:
    """``cartnudge web`` on a free port, healthy; with its base URL."""
    from cartnudge.testing.postgres import free_port
    from cartnudge.testing.serve import wait_healthy

    port = free_port()
    web = Child("web", [CARTNUDGE, "web", "--port", str(port)], env, logs / "web.log")
    base = f"http://127.0.0.1:{port}"
    if not wait_healthy(base, web.process, READY_TIMEOUT_S):
        web.stop()
        raise RuntimeError(f"cartnudge web did not start: {web.output()}")
    return web, base


def troubles(child: Child) -> list[str]:
    """Lines of a child's output that say something went wrong."""
    return [
        line
        for line in child.output().splitlines()
        if "Traceback" in line or '"level": "ERROR"' in line or '"level": "CRITICAL"' in line
    ]
