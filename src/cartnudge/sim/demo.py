"""``cartnudge demo``: the whole loop on a synthetic store, in accelerated time.

Five simulated days of a small store: shoppers in three time zones fill carts of every
size, some buy before a reminder, some after, some between the decision and the
delivery, some never. Their events go through the real intake path into a database of
the demo's own, and the real waiter and sender run every ten simulated minutes. The
emails are left in the file outbox for the newcomer to open.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from cartnudge.clock import FrozenClock
from cartnudge.config import Settings
from cartnudge.db.engine import make_engine
from cartnudge.db.migrate import upgrade
from cartnudge.db.models import Cart, CartKey, Send
from cartnudge.db.session import reading, writing
from cartnudge.intake import storefront
from cartnudge.intake.service import Delivery, ingest_batch
from cartnudge.money import format_minor
from cartnudge.shops.repository import ShopRecord
from cartnudge.shops.service import add_shop
from cartnudge.worker import Loops

SHOP = "tea-house"

START = datetime(2026, 3, 9, 6, 0, tzinfo=UTC)  # a Monday morning in London
DAYS = 5  # carts start in the first two; the rest lets every story end
STEP = timedelta(minutes=10)
ZONES = ("Europe/London", "America/New_York", "Asia/Tokyo")
LOCALES = {"Europe/London": "en-GB", "America/New_York": "en-US", "Asia/Tokyo": "ja-JP"}
PRODUCTS = (
    ("Blue enamel mug", "12.00"),
    ("Earl Grey, 250 g", "9.50"),
    ("Cast-iron teapot", "64.00"),
    ("Linen tea towel", "14.00"),
    ("Loose-leaf sampler", "32.00"),
    ("Walnut tray", "120.00"),
    ("Glass kettle", "48.00"),
)
NAMES = ("Ana", "Ben", "Chloé", "Dev", "Emi", None, None)


@dataclass
class Shopper:
    """One synthetic cart and what its shopper will do."""

    cart_id: str
    email: str | None
    first_name: str | None
    zone: str
    opted_in: bool
    items: list[tuple[str, str, int]]
    started: datetime
    buys_at: datetime | None
    saved: bool

    def event(self, kind: str, at: datetime, n: int) -> dict[str, Any]:
        total = sum(float(price) * qty for _, price, qty in self.items)
        return {
            "event_id": f"demo-{self.cart_id}-{n}",
            "type": kind,
            "cart_id": self.cart_id,
            "occurred_at": at.isoformat(),
            "email": self.email,
            "first_name": self.first_name,
            "locale": LOCALES[self.zone],
            "timezone": self.zone,
            "currency": "GBP",
            "total": f"{total:.2f}",
            "items": [
                {"title": title, "quantity": qty, "unit_price": price, "sku": f"SKU-{i}"}
                for i, (title, price, qty) in enumerate(self.items)
            ],
            "return_url": f"https://teahouse.example/cart/{self.cart_id}",
            "accepts_marketing": self.opted_in,
            "order_id": f"order-{self.cart_id}" if kind == "order_placed" else None,
        }


def shoppers(count: int, rng: random.Random) -> list[Shopper]:
    out = []
    for n in range(count):
        started = START + timedelta(minutes=rng.randrange(0, 2 * 24 * 60))
        roll = rng.random()
        # About a third buy on their own; of those, some soon, some after a nudge or two.
        buys_at = (
            started + timedelta(minutes=rng.choice([20, 90, 300, 1500])) if roll < 0.35 else None
        )
        picks = rng.sample(PRODUCTS, rng.randint(1, 3))
        out.append(
            Shopper(
                cart_id=f"cart-{n:04d}",
                email=None if rng.random() < 0.08 else f"shopper{n}@example.com",
                first_name=rng.choice(NAMES),
                zone=rng.choice(ZONES),
                opted_in=rng.random() < 0.85,
                items=[(title, price, rng.randint(1, 2)) for title, price in picks],
                started=started,
                buys_at=buys_at,
                saved=rng.random() < 0.1,
            )
        )
    return out


@dataclass
class Story:
    carts: int = 0
    purchases: int = 0
    passes: Counter[str] = field(default_factory=Counter)
    outcomes: dict[str, Any] = field(default_factory=dict)
    shoppers: list[Shopper] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)  # one line per cart


def run_demo(home: Path, *, carts: int = 120, seed: int = 7) -> Story:
    """Run the demo in ``home`` (emptied first) and tell what happened."""
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    settings = Settings(home=home, database_url=None, public_url="http://127.0.0.1:8000")
    with _home_for_keys(home):
        engine = make_engine(settings.resolved_database_url)
        upgrade(engine)
        try:
            return _simulate(engine, settings, carts, random.Random(seed))  # noqa: S311
        finally:
            engine.dispose()


@contextmanager
def _home_for_keys(home: Path) -> Iterator[None]:
    """Seal the demo shop's secrets with the data key of the demo's own folder, so that
    ``CARTNUDGE_HOME=<home> cartnudge …`` opens its database afterwards. (With
    CARTNUDGE_DATA_KEYS set, those keys seal, and open, as for any database.)"""
    from cartnudge.keys import reset_process_keyring

    before = os.environ.get("CARTNUDGE_HOME")
    os.environ["CARTNUDGE_HOME"] = str(home)
    reset_process_keyring()
    try:
        yield
    finally:
        if before is None:
            del os.environ["CARTNUDGE_HOME"]
        else:
            os.environ["CARTNUDGE_HOME"] = before
        reset_process_keyring()


def open_command(home: Path, program: str, environ: Mapping[str, str]) -> str:
    """The command that lists the demo's carts with the ordinary CLI (``program``: the
    command, quoted for a shell)."""
    settings = [f"CARTNUDGE_HOME={shlex.quote(str(home))}"]
    if environ.get("CARTNUDGE_DATABASE_URL"):
        settings.append("CARTNUDGE_DATABASE_URL=")  # the demo's database is SQLite in its folder
    return f"{' '.join(settings)} {program} carts list --shop {SHOP}"


def _simulate(engine: Engine, settings: Settings, count: int, rng: random.Random) -> Story:
    with writing(engine) as conn:
        shop = add_shop(
            conn,
            slug=SHOP,
            name="Tea House",
            timezone="Europe/London",
            currency="GBP",
            now=START,
            activated_at=START - timedelta(days=1),
            sender="Tea House <hello@teahouse.example>",
            postal_address="1 Leaf Lane\nBristol BS1 1AA\nUnited Kingdom",
            holdout_percent=0,  # the demo shows reminders; its story has no held-out line yet
        )
    events = []
    cast = shoppers(count, rng)
    for shopper in cast:
        kind = "cart_saved" if shopper.saved else "checkout_started"
        events.append((shopper.started, shopper.event(kind, shopper.started, 0)))
        if shopper.buys_at is not None:
            events.append((shopper.buys_at, shopper.event("order_placed", shopper.buys_at, 1)))
    events.sort(key=lambda pair: pair[0])

    story = Story(
        carts=count,
        purchases=sum(1 for _, e in events if e["type"] == "order_placed"),
        shoppers=cast,
    )
    clock = FrozenClock(START)
    loops = Loops(engine, settings, clock)
    now, end, index = START, START + timedelta(days=DAYS), 0
    try:
        while now <= end:
            arrived = []
            while index < len(events) and events[index][0] <= now:
                arrived.append(events[index][1])
                index += 1
            if arrived:
                _ingest(engine, shop, arrived, now)
            clock.now = now
            result = loops.run_once()
            story.passes.update({k: v for k, v in result["sender"].items() if v})
            story.passes.update({f"waiter_{k}": v for k, v in result["waiter"].items() if v})
            now += STEP
    finally:
        loops.providers.close()
    story.outcomes = _outcomes(engine)
    story.accounts = _accounts(engine, cast)
    return story


def _ingest(
    engine: Engine, shop: ShopRecord, payloads: list[dict[str, Any]], now: datetime
) -> None:
    deliveries = [
        Delivery(
            shop,
            storefront.SOURCE,
            p["event_id"],
            p["type"],
            json.dumps(p),
            storefront.parse(p["event_id"], p, shop=shop),
            now,
        )
        for p in payloads
    ]
    with writing(engine) as conn:
        ingest_batch(conn, deliveries, now)


def _outcomes(engine: Engine) -> dict[str, Any]:
    sends, carts = Send, Cart
    with reading(engine) as conn:
        by_status: dict[Any, int] = dict(
            conn.execute(select(sends.c.status, func.count()).group_by(sends.c.status)).all()
        )
        reasons: dict[Any, int] = dict(
            conn.execute(
                select(sends.c.reason, func.count())
                .where(sends.c.status == "skipped")
                .group_by(sends.c.reason)
            ).all()
        )
        sent_by_step: dict[Any, int] = dict(
            conn.execute(
                select(sends.c.step, func.count())
                .where(sends.c.status == "sent")
                .group_by(sends.c.step)
            ).all()
        )
        cart_status: dict[Any, int] = dict(
            conn.execute(select(carts.c.status, func.count()).group_by(carts.c.status)).all()
        )
    return {
        "sends": by_status,
        "sent_by_step": sent_by_step,
        "skipped_because": reasons,
        "carts": cart_status,
    }


def _accounts(engine: Engine, cast: list[Shopper]) -> list[str]:
    """One line per cart: what the shopper did, which reminders went, what became of it."""
    carts, keys, sends = Cart, CartKey, Send
    with reading(engine) as conn:
        # The row of each demo cart, found by the storefront's cart id.
        rows = {
            row.value: row
            for row in conn.execute(
                select(keys.c.value, carts)
                .join(carts, carts.c.id == keys.c.cart_id)
                .where(keys.c.kind == "storefront_cart")
            )
        }
        steps: dict[int, list[Any]] = {}
        for send in conn.execute(select(sends).order_by(sends.c.cart_id, sends.c.step)):
            steps.setdefault(send.cart_id, []).append(send)
    lines = []
    for shopper in cast:
        row = rows.get(shopper.cart_id)
        if row is None:
            lines.append(f"  {shopper.cart_id}  (not stored)")
            continue
        lines.append(_account(shopper, row, steps.get(row.id, [])))
    return lines


ACCOUNT = "  {cart:<9}  {total:>8}  {did:<38}  {reminders:<30}  {outcome}"


def _account(shopper: Shopper, cart: Any, sends: list[Any]) -> str:
    total = "-" if cart.total_minor is None else format_minor(cart.total_minor, cart.currency)
    city = shopper.zone.split("/")[-1].replace("_", " ")
    did = f"{'saved' if shopper.saved else 'checkout'} {_at(shopper.started)} {city}"
    if shopper.email is None:
        did += ", no email"
    elif not shopper.opted_in:
        did += ", no opt-in"
    if cart.status == "bought":
        outcome = f"bought {_at(cart.bought_at)}"
    elif cart.status == "closed":
        outcome = f"gave up: {cart.status_reason}"
    else:
        outcome = f"still {cart.status}"
    return ACCOUNT.format(
        cart=shopper.cart_id, total=total, did=did, reminders=_reminders(sends), outcome=outcome
    )


def _reminders(sends: list[Any]) -> str:
    """The reminders in a few words: when each went (* held by quiet hours until the
    morning), or why it did not."""
    sent = [
        f"{_at(s.sent_at)}{'*' if s.due_at > s.created_at else ''}"
        for s in sends
        if s.status == "sent"
    ]
    others = []
    for send in sends:
        if send.status == "sent":
            continue
        if send.status == "skipped" and send.reason == "cart is bought":
            why = "stopped: bought"
        else:
            why = f"{send.status}: {(send.reason or '').split(':')[0]}".rstrip(": ")
        if why not in others:
            others.append(why)
    parts = ([f"sent {', '.join(sent)}"] if sent else []) + others
    return "; ".join(parts) or "none"


def _at(when: datetime | None) -> str:
    return "?" if when is None else f"{when:%a %H:%M}"


def describe(story: Story, outbox: Path, seconds: float) -> list[str]:
    """What happened, in the words of the README's promise."""
    sends, skipped = story.outcomes["sends"], story.outcomes["skipped_because"]
    steps = story.outcomes["sent_by_step"]
    by_purchase = skipped.get("cart is bought", 0)
    refused = {r: n for r, n in skipped.items() if r != "cart is bought"}
    emails = sorted(outbox.rglob("*.eml"))
    lines = [
        f"cartnudge demo: Tea House, {DAYS} simulated days in {seconds:.1f} s",
        f"  carts seen                  {story.carts}",
        f"  bought                      {story.outcomes['carts'].get('bought', 0)}",
        f"  reminders sent              {sends.get('sent', 0)}  "
        + ", ".join(f"step {k}: {v}" for k, v in sorted(steps.items())),
        f"  deferred by quiet hours     {story.passes['deferred']} (sent in the morning)",
        f"  stopped by a purchase       {by_purchase} (decided, then the shopper bought)",
        f"  given up                    {story.outcomes['carts'].get('expired', 0)}",
    ]
    for reason, n in sorted(refused.items()):
        lines.append(f"  not sent                    {n}  ({reason})")
    lines.append("every cart (times UTC; * held by quiet hours in the shopper's time zone):")
    lines.append(
        ACCOUNT.format(
            cart="cart", total="total", did="shopper", reminders="reminders", outcome="outcome"
        )
    )
    lines.extend(story.accounts)
    if emails:
        lines.append(f"emails: {len(emails)} in {outbox} (open any .eml in a mail client)")
    return lines
