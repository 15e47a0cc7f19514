"""Sender figures: emails composed per second, emails delivered per second end to end
(claim, gates, compose, SMTP to a local server, record), and how soon a due cart is
claimed and its email sent when the loops run on the real clock.

Run by ``python -m bench.run --only compose,deliver,due_claimed`` (add
``deliver_pg,due_claimed_pg`` for PostgreSQL).

The SMTP server is aiosmtpd's own ``Sink`` handler (accepts and discards), in a process
of its own, so it does not share the sender's interpreter. Each figure runs on a new
database: SQLite (WAL, synchronous=FULL) in a temporary folder, and a private
PostgreSQL 15 (fsync on) unless --sqlite-only.
"""

from __future__ import annotations

import math
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, String, cast, func, literal, select

from cartnudge.config import Settings
from cartnudge.db.engine import make_engine
from cartnudge.db.migrate import upgrade
from cartnudge.db.models import Cart, Send
from cartnudge.db.session import reading, writing
from cartnudge.delivery.sender import Links, Providers, send_due
from cartnudge.messages.compose import Draft, Line, compose
from cartnudge.messages.voice import default_voice
from cartnudge.shops.service import add_shop
from cartnudge.shops.versioned import set_document
from cartnudge.testing.carts import insert_open_carts
from cartnudge.testing.postgres import free_port
from cartnudge.timing.rules import default_rules
from cartnudge.timing.service import RULES
from cartnudge.timing.waiter import wake_due
from cartnudge.worker import Loops

T0 = datetime(2026, 3, 14, 15, 0, tzinfo=UTC)
LINKS = Links("https://carts.example", b"bench-key")


@contextmanager
def smtp_sink() -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}", "-c",
         "aiosmtpd.handlers.Sink"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def shop_for(engine: Engine, port: int, *, any_hour: bool = False) -> int:
    """The bench shop, mailing to the SMTP server on ``port``. ``any_hour``: its rules have
    no quiet hours, for figures on the real clock, which must not depend on the hour they
    run at (the default rules hold every email from 21:00 to 08:00 in London)."""
    with writing(engine) as conn:
        shop = add_shop(
            conn,
            slug="bench",
            name="Bench",
            timezone="Europe/London",
            currency="EUR",
            now=T0 - timedelta(days=1),
            sender="Bench Shop <hello@bench.example>",
            postal_address="1 Bench Street\nLondon",
            mail_url=f"smtp://127.0.0.1:{port}",
        )
        if any_hour:
            rules = default_rules().model_copy(update={"quiet_hours": None})
            text = yaml.safe_dump(rules.to_document(), sort_keys=False)
            set_document(conn, RULES, shop, text, T0 - timedelta(days=1))
    return shop.id


def compose_figure(count: int) -> dict[str, Any]:
    voice = default_voice()
    drafts = [
        Draft(
            step=1,
            last_step=False,
            saved_link=False,
            shop_name="Bench Shop",
            sender="Bench Shop <hello@bench.example>",
            postal_address="1 Bench Street\nLondon",
            to=f"shopper{n}@bench.example",
            first_name="Alex",
            locale="en-GB",
            shop_locale="en",
            currency="EUR",
            total_minor=6400,
            items=(
                Line("Blue enamel mug", 2, 1200, "https://shop.example/mug.jpg"),
                Line("Earl Grey, 250 g", 1, 4000, None),
            ),
            return_link=f"https://carts.example/c/token{n}",
            unsubscribe_url=f"https://carts.example/u/token{n}",
            unsubscribe_mailto="mailto:hello@bench.example?subject=unsubscribe",
            reply_to="hello+r-token@bench.example",
            message_id=f"<{n}.token@bench.example>",
            date=T0,
        )
        for n in range(count)
    ]
    started = time.perf_counter()
    for draft in drafts:
        compose(draft, voice)  # the bytes are written inside
    elapsed = time.perf_counter() - started
    return {"count": count, "per_s": round(count / elapsed)}


def deliver_figure(url: str, port: int, count: int, outbox: Path) -> dict[str, Any]:
    engine = make_engine(url)
    upgrade(engine)
    shop_id = shop_for(engine, port)
    insert_open_carts(
        engine, shop_id, count, active_at=T0, wake_at=T0 + timedelta(hours=2), shoppers=True
    )
    now = T0 + timedelta(hours=2)
    assert wake_due(engine, now).moves["reminders"] == count
    providers = Providers(outbox)
    started = time.perf_counter()
    report = send_due(engine, lambda: now, providers, LINKS, rng=random.Random(1))
    elapsed = time.perf_counter() - started
    providers.close()
    sends = Send
    with reading(engine) as conn:
        sent = conn.execute(
            select(func.count()).select_from(sends).where(sends.c.status == "sent")
        ).scalar_one()
    engine.dispose()
    return {
        "count": count,
        "seconds": round(elapsed, 2),
        "per_s": round(count / elapsed),
        "verified": report.counts["sent"] == count == sent,
    }


def latency_figure(url: str, port: int, count: int, home: Path) -> dict[str, Any]:
    """Carts come due at random instants over 20 s while the loops run on the real clock;
    due → claimed is when the waiter's pass took the cart, due → sent when its email was
    accepted by the SMTP server (both stamped by the loops' own clock)."""
    engine = make_engine(url)
    upgrade(engine)
    shop_id = shop_for(engine, port, any_hour=True)
    start = datetime.now(UTC) + timedelta(seconds=3)
    rng = random.Random(2)
    offsets = sorted(rng.uniform(0, 20) for _ in range(count // 10))
    for offset in offsets:
        insert_open_carts(
            engine,
            shop_id,
            10,
            active_at=start - timedelta(hours=3),
            wake_at=start + timedelta(seconds=offset),
            shoppers=True,
        )
    # insert_open_carts numbers addresses from 0 per call; make them distinct per cart.
    carts = Cart
    with writing(engine) as conn:
        address = literal("s") + cast(carts.c.id, String) + literal("@bench.example")
        conn.execute(carts.update().values(email=address, email_key=address))
        due_at = dict(conn.execute(select(carts.c.id, carts.c.next_wake_at)).all())
    settings = Settings(home=home, database_url=url, secret_key="bench-key")
    loops = Loops(engine, settings)
    thread = threading.Thread(target=loops.run)
    thread.start()
    sends = Send
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with reading(engine) as conn:
                done = conn.execute(
                    select(func.count()).select_from(sends).where(sends.c.status == "sent")
                ).scalar_one()
            if done >= len(due_at):
                break
            time.sleep(0.5)
    finally:
        loops.stop()
        thread.join()
    with reading(engine) as conn:
        claimed = dict(conn.execute(select(carts.c.id, carts.c.last_reminder_at)).all())
        sent = dict(conn.execute(select(sends.c.cart_id, sends.c.sent_at)).all())
    engine.dispose()
    to_claim = sorted((claimed[c] - due_at[c]).total_seconds() for c in due_at)
    to_send = sorted((sent[c] - due_at[c]).total_seconds() for c in due_at if sent.get(c))

    def pct(values: list[float], q: float) -> float:
        if not values:
            return math.nan
        return round(values[min(len(values) - 1, int(q * len(values)))], 2)

    return {
        "count": len(due_at),
        "claim_p50": pct(to_claim, 0.5),
        "claim_p99": pct(to_claim, 0.99),
        "claim_max": pct(to_claim, 1.0),
        "send_p50": pct(to_send, 0.5),
        "send_p99": pct(to_send, 0.99),
        "mean": round(statistics.fmean(to_claim), 2),
        "verified": len(to_send) == len(due_at),
    }
