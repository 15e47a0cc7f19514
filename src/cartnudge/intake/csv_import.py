"""The CSV lane: backfill abandoned carts and purchases from a file.

Two layouts are understood (see docs/csv-import.md): a Stripe Checkout Sessions export and
our own documented columns. Each data row becomes one canonical ``CartEvent`` recorded and
applied by ``intake.service.ingest``, exactly as a webhook is, so the inbox dedupes re-runs
and a later webhook for the same session or cart lands on the same cart.

The inbox keeps each row as ``{"format", "line", "header", "values"}``: everything
``parse_row`` needs, so ``events replay`` parses a dead row exactly as the import did.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Engine

from cartnudge.clock import parse_instant
from cartnudge.events import CartEvent, EventKind, Item, KeyKind, OrderInfo, Unapplicable
from cartnudge.intake import checks
from cartnudge.intake import fields as f
from cartnudge.intake.backfill import apply_all
from cartnudge.intake.schemas import StorefrontItem
from cartnudge.intake.service import Delivery
from cartnudge.intake.storefront import describe, to_items
from cartnudge.shops.repository import ShopRecord

SOURCE = "csv"
STOREFRONT = "storefront"  # the lane whose ids our own columns carry
CONSENT_SOURCE = "csv:accepts_marketing"
_ITEMS = TypeAdapter(list[StorefrontItem])


class Format(StrEnum):
    AUTO = "auto"
    STRIPE = "stripe"
    CARTNUDGE = "cartnudge"


class ImportRefused(ValueError):
    """The whole file cannot be read; nothing was stored."""


# Column names, matched case-insensitively with spaces collapsed. The first name of each
# Stripe tuple is the one we document; the others are variants seen in Stripe's exports.
STRIPE_COLUMNS: dict[str, tuple[str, ...]] = {
    "session": ("id", "checkout session id", "session id"),
    "created": ("created (utc)", "created date (utc)", "created"),
    "status": ("status",),
    "payment_status": ("payment status",),
    "email": ("customer email", "customer details email", "email"),
    "name": ("customer name", "customer details name"),
    "amount": ("amount total", "amount"),
    "currency": ("currency",),
    "expires": ("expires at (utc)", "expires at"),
    "recovered_from": ("recovered from",),
    "locale": ("locale",),
    "recovery_url": ("recovery url",),
}
_NAIVE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")
_GROUPED_AMOUNT = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$")  # "1,234.50"


def normalise(name: str) -> str:
    return " ".join(name.strip().lower().split())


class _Row:
    """One data row, looked up by any of a column's names."""

    def __init__(self, header: Sequence[str], values: Sequence[str]) -> None:
        self.cells = {
            normalise(h): (h.strip(), v.strip()) for h, v in zip(header, values, strict=True)
        }

    def cell(self, *names: str) -> tuple[str, str]:
        """(the column as the file names it, its value); the value is "" if absent."""
        for name in names:
            if name in self.cells:
                return self.cells[name]
        return names[0], ""

    def text(self, *names: str) -> str | None:
        return self.cell(*names)[1][: f.MAX_TEXT] or None

    def required(self, *names: str) -> str:
        column, value = self.cell(*names)
        if not value:
            raise Unapplicable(f"{column}: missing value")
        return value[: f.MAX_TEXT]


# -- reading a file -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RawRow:
    line: int  # the line the row starts on, counting the header as line 1
    values: list[str]


@dataclass(frozen=True, slots=True)
class Table:
    format: Format
    header: list[str]
    rows: list[RawRow]


def read_table(data: bytes, fmt: Format = Format.AUTO) -> Table:
    """Decode and split the whole file, or refuse it; nothing is stored either way."""
    if not data.strip():
        raise ImportRefused("the file is empty")
    if b"\x00" in data:
        raise ImportRefused("not a CSV file: it contains binary data")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportRefused(f"not a UTF-8 CSV file (bad byte at offset {exc.start})") from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[RawRow] = []
    try:
        header = next(reader)
        found = _detect(header, fmt)
        while True:
            start = reader.line_num + 1
            values = next(reader, None)
            if values is None:
                break
            if values:  # csv gives [] for a blank line
                rows.append(RawRow(start, values))
    except csv.Error as exc:
        raise ImportRefused(f"line {reader.line_num}: not valid CSV: {exc}") from exc
    return Table(found, [h.strip() for h in header], rows)


def _detect(header: list[str], fmt: Format) -> Format:
    names = [normalise(h) for h in header]
    dupes = sorted({n for n in names if n and names.count(n) > 1})
    if dupes:
        raise ImportRefused(f"duplicate column(s) in the header: {', '.join(dupes)}")
    have = set(names)
    ours = {"cart_id", "occurred_at"} <= have
    needed = (("session",), ("created",), ("status", "payment_status"))
    missing = [
        STRIPE_COLUMNS[keys[0]][0]
        for keys in needed
        if not any(have & set(STRIPE_COLUMNS[k]) for k in keys)
    ]
    stripe = not missing and "cart_id" not in have
    if fmt is Format.CARTNUDGE and not ours:
        raise ImportRefused("--format cartnudge: the header needs cart_id and occurred_at")
    if fmt is Format.STRIPE and not stripe:
        raise ImportRefused(f"--format stripe: the header lacks {', '.join(missing)}")
    if fmt is Format.AUTO:
        if ours:
            return Format.CARTNUDGE
        if stripe:
            return Format.STRIPE
        shown = ", ".join(h.strip() for h in header[:8]) or "(none)"
        raise ImportRefused(
            "unknown header: expected our columns (cart_id, occurred_at, ...) or a Stripe "
            f"Checkout Sessions export (id, Created (UTC), Status, ...); found: {shown}"
        )
    return fmt


# -- one row to one event -----------------------------------------------------------------
def row_payload(table: Table, row: RawRow) -> dict[str, Any]:
    return {
        "format": table.format.value,
        "line": row.line,
        "header": table.header,
        "values": row.values,
    }


def row_external_id(fmt: Format, header: Sequence[str], values: Sequence[str]) -> str:
    """Stable for the same row content, whatever its line or column order."""
    if len(header) == len(values):
        row = _Row(header, values)
        key_names = STRIPE_COLUMNS["session"] if fmt is Format.STRIPE else ("cart_id",)
        ident = row.cell(*key_names)[1][:100] or "-"
        content: Any = sorted((name, value) for name, (_, value) in row.cells.items())
    else:
        ident, content = "-", [[normalise(h) for h in header], [v.strip() for v in values]]
    digest = hashlib.sha256(json.dumps(content, ensure_ascii=False).encode()).hexdigest()
    return f"{fmt.value}:{ident}:{digest}"


def parse_row(payload: Any, external_id: str, shop: ShopRecord) -> CartEvent:
    """The event one kept row stands for; raises ``Unapplicable`` naming the line."""
    if not isinstance(payload, dict):
        raise Unapplicable("kept CSV row is not an object")
    line, header, values = payload.get("line"), payload.get("header"), payload.get("values")
    if not (isinstance(header, list) and isinstance(values, list)):
        raise Unapplicable("kept CSV row has no header and values")
    try:
        if len(values) != len(header):
            raise Unapplicable(f"expected {len(header)} columns, found {len(values)}")
        row = _Row([str(h) for h in header], [str(v) for v in values])
        # Held to the webhooks' rules; a bad locale or link is ignored, as from a platform.
        if payload.get("format") == Format.STRIPE:
            links = checks.Links.of(shop, *checks.STRIPE_HOSTS)
            return checks.vet(_stripe_event(row, external_id), links, strict=False)
        if payload.get("format") == Format.CARTNUDGE:
            event, discount = _our_event(row, external_id, shop)
            return checks.vet(event, checks.Links.of(shop), strict=False, discount_minor=discount)
        raise Unapplicable(f"unknown CSV format {payload.get('format')!r}")
    except Unapplicable as exc:
        raise Unapplicable(f"line {line}: {exc}") from exc


def _stripe_event(row: _Row, external_id: str) -> CartEvent:
    c = STRIPE_COLUMNS
    session_id = row.required(*c["session"])
    if not session_id.startswith("cs_"):  # e.g. a Payments export's ch_/py_ ids
        raise Unapplicable(
            f"{row.cell(*c['session'])[0]}: {session_id!r} is not a Checkout Session id"
        )
    status = (row.text(*c["status"]) or "").lower()
    paid = (row.text(*c["payment_status"]) or "").lower() in ("paid", "no_payment_required")
    if status not in ("", "open", "expired", "complete"):
        raise Unapplicable(f"Status: {status!r} is not open, expired or complete")
    created = _stripe_time(row, c["created"])
    if created is None:
        raise Unapplicable(f"{row.cell(*c['created'])[0]}: missing value")
    code = f.currency(row.text(*c["currency"]))
    amount = _stripe_amount(row, c["amount"], code)
    common: dict[str, Any] = {
        "source": SOURCE,
        "external_id": external_id,
        "email": row.text(*c["email"]),
        "first_name": f.first_word(row.text(*c["name"])),
    }
    if status == "complete" or paid:
        keys = [(KeyKind.STRIPE_SESSION, session_id)]
        if recovered_from := row.text(*c["recovered_from"]):
            keys.append((KeyKind.STRIPE_SESSION, recovered_from))
        # The session is Stripe's order: the same row as its checkout.session.completed.
        order = OrderInfo(
            session_id, placed_at=created, total_minor=amount, currency=code, platform="stripe"
        )
        return CartEvent(
            topic="csv:stripe:complete",
            kind=EventKind.ORDER_PLACED,
            occurred_at=created,
            keys=tuple(keys),
            order=order,
            **common,
        )
    if not status:
        raise Unapplicable("Status: missing value, and Payment Status is not paid")
    expires = _stripe_time(row, c["expires"])
    locale = row.text(*c["locale"])
    return CartEvent(
        topic=f"csv:stripe:{status}",
        kind=EventKind.CHECKOUT_STARTED,
        # An expired session's event happens at expiry, as Stripe's webhook does.
        occurred_at=expires if status == "expired" and expires else created,
        activity_at=created,
        keys=((KeyKind.STRIPE_SESSION, session_id),),
        currency=code,
        total_minor=amount,
        locale=None if locale == "auto" else locale,
        return_url=row.text(*c["recovery_url"]),
        **common,
    )


def _stripe_time(row: _Row, names: tuple[str, ...]) -> datetime | None:
    """Stripe exports write UTC without an offset ("2026-03-14 15:09"); the column says UTC."""
    column, value = row.cell(*names)
    if not value:
        return None
    if value.isdigit():
        return datetime.fromtimestamp(int(value), UTC)
    try:
        if _NAIVE_TIME.match(value):
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        return parse_instant(value)
    except ValueError as exc:
        raise Unapplicable(f"{column}: not a time: {value!r}") from exc


def _stripe_amount(row: _Row, names: tuple[str, ...], code: str | None) -> int | None:
    """Stripe's Dashboard exports show decimal major units ("58.00"), not the API's cents."""
    column, value = row.cell(*names)
    if _GROUPED_AMOUNT.match(value):
        value = value.replace(",", "")
    return _non_negative(f.minor(value, code, column), column)


def _non_negative(amount: int | None, column: str) -> int | None:
    if amount is not None and amount < 0:
        raise Unapplicable(f"{column}: must not be negative")
    return amount


def _our_event(row: _Row, external_id: str, shop: ShopRecord) -> tuple[CartEvent, int | None]:
    """The row's event and the discount it states, if any."""
    cart_id = row.required("cart_id")
    occurred = row.required("occurred_at")
    try:
        occurred_at = parse_instant(occurred)
    except ValueError as exc:
        raise Unapplicable(
            f"occurred_at: not an RFC 3339 time with an offset: {occurred!r}"
        ) from exc
    status = (row.text("status") or "open").lower()
    if status not in ("open", "bought"):
        raise Unapplicable(f"status: {status!r} is not open or bought")
    code = f.currency(row.text("currency"), shop.currency)
    timezone = f.time_zone(row.text("timezone"))
    items = _items(row.text("items"), code)
    total = _non_negative(f.minor(row.text("total"), code, "total"), "total")
    discount = _non_negative(f.minor(row.text("discount"), code, "discount"), "discount")
    if total is None and items is not None:
        total = f.basket_total(items)
    marketing = _flag(row.text("accepts_marketing"))
    common: dict[str, Any] = {
        "source": SOURCE,
        "external_id": external_id,
        "topic": f"csv:cartnudge:{status}",
        "occurred_at": occurred_at,
        "keys": ((KeyKind.STOREFRONT_CART, cart_id),),
        "email": row.text("email"),
        "first_name": row.text("first_name"),
        "locale": row.text("locale"),
        "timezone": timezone,
        "accepts_marketing": marketing,
        "consent_source": CONSENT_SOURCE if marketing is not None else None,
        "return_url": row.text("return_url"),
    }
    if status == "bought":
        order_id = row.text("order_id")
        if order_id is None:
            raise Unapplicable("order_id: required when status is bought")
        # Like cart_id, order_id is the storefront's: the same order row as the storefront
        # lane's order_placed for that id.
        order = OrderInfo(
            order_id,
            placed_at=occurred_at,
            total_minor=total,
            currency=code,
            platform=STOREFRONT,
        )
        return CartEvent(kind=EventKind.ORDER_PLACED, currency=code, order=order, **common), None
    event = CartEvent(
        kind=EventKind.CART_UPDATED,
        items=items,
        currency=code,
        total_minor=total,
        **f.total_parts({name: row.text(name) for name in f.TOTAL_PARTS}, code),
        **common,
    )
    return event, discount


def _items(raw: str | None, code: str | None) -> tuple[Item, ...] | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise Unapplicable("items: not valid JSON") from exc
    if not isinstance(data, list):
        raise Unapplicable("items: expected a JSON array of items")
    for entry in data:  # a hand-written file may give prices as numbers: read them as text
        price = entry.get("unit_price") if isinstance(entry, dict) else None
        if isinstance(price, int | float) and not isinstance(price, bool):
            entry["unit_price"] = repr(price)
    try:
        parsed = _ITEMS.validate_python(data)
    except ValidationError as exc:
        raise Unapplicable(f"items: {describe(exc)}") from exc
    return to_items(parsed, code)


def _flag(value: str | None) -> bool | None:
    if value is None:
        return None
    answer = {"true": True, "false": False}.get(value.lower())
    if answer is None:
        raise Unapplicable(f"accepts_marketing: {value!r} is not true, false or empty")
    return answer


def deliveries(table: Table, shop: ShopRecord, now: datetime) -> list[Delivery]:
    """One inbox delivery per data row: parsed, or the reason it cannot be."""
    out = []
    for row in table.rows:
        external_id = row_external_id(table.format, table.header, row.values)
        payload = row_payload(table, row)
        try:
            parsed: CartEvent | Unapplicable = parse_row(payload, external_id, shop)
        except Unapplicable as exc:
            parsed = exc
        body = json.dumps(payload, ensure_ascii=False)
        topic = f"csv:{table.format.value}"
        out.append(Delivery(shop, SOURCE, external_id, topic, body, parsed, now))
    return out


def import_csv(
    engine: Engine,
    shop: ShopRecord,
    data: bytes,
    now: datetime,
    *,
    fmt: Format = Format.AUTO,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Import one file's bytes; raises ``ImportRefused`` (storing nothing) for a bad file."""
    table = read_table(data, fmt)
    tally = apply_all(engine, shop, deliveries(table, shop, now), now, dry_run=dry_run)
    return {"format": table.format.value, **tally.summary(dry_run=dry_run)}
