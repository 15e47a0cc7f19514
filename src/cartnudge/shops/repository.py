"""Every SQL statement about shops."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from email.utils import formataddr
from typing import Any

from sqlalchemy import Connection, insert, select, update

from cartnudge.db.models import Shop

shops = Shop


@dataclass(frozen=True, slots=True)
class ShopRecord:
    """A shop as the rest of the code sees it: plain data, never an ORM row."""

    id: int
    slug: str
    name: str
    timezone: str
    currency: str
    shopify_domain: str | None
    shopify_secret: str | None
    stripe_secret: str | None
    storefront_secrets: tuple[str, ...]
    order_match_window_s: int
    activated_at: datetime
    created_at: datetime
    sender_name: str | None = None
    sender_email: str | None = None
    postal_address: str | None = None
    mail_url: str | None = None
    locale: str = "en"
    keep_payloads_s: int = 7 * 86400
    keep_decisions_s: int = 30 * 86400
    keep_closed_pii_s: int = 180 * 86400
    test_orders_close_carts: bool = False
    return_domains: tuple[str, ...] | None = None  # None: the owner has not listed them
    cart_url: str | None = None
    paused_at: datetime | None = None  # sending paused by the owner since then
    paused_by: str | None = None
    paused_reason: str | None = None
    export_hour: int | None = None  # the nightly sheet's hour, shop local (0-23)
    export_to: str | None = None  # a folder, or sheets:<spreadsheet id>
    export_format: str = "csv"
    holdout_percent: int = 0  # of carts that get no reminder, for measuring the lift

    @property
    def sender(self) -> str | None:
        """``Name <address>`` as it goes in a From header, or ``None`` until both are set."""
        if self.sender_name and self.sender_email:
            return formataddr((self.sender_name, self.sender_email))
        return None

    @classmethod
    def from_row(cls, row: Any) -> ShopRecord:
        return cls(
            id=row.id,
            slug=row.slug,
            name=row.name,
            timezone=row.timezone,
            currency=row.currency,
            shopify_domain=row.shopify_domain,
            shopify_secret=row.shopify_secret,
            stripe_secret=row.stripe_secret,
            storefront_secrets=tuple(row.storefront_secrets or ()),
            order_match_window_s=row.order_match_window_s,
            activated_at=row.activated_at,
            created_at=row.created_at,
            sender_name=row.sender_name,
            sender_email=row.sender_email,
            postal_address=row.postal_address,
            mail_url=row.mail_url,
            locale=row.locale,
            keep_payloads_s=row.keep_payloads_s,
            keep_decisions_s=row.keep_decisions_s,
            keep_closed_pii_s=row.keep_closed_pii_s,
            test_orders_close_carts=bool(row.test_orders_close_carts),
            return_domains=(tuple(row.return_domains) if row.return_domains is not None else None),
            cart_url=row.cart_url,
            paused_at=row.paused_at,
            paused_by=row.paused_by,
            paused_reason=row.paused_reason,
            export_hour=row.export_hour,
            export_to=row.export_to,
            export_format=row.export_format,
            holdout_percent=row.holdout_percent,
        )


class ShopRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def by_slug(self, slug: str) -> ShopRecord | None:
        row = self.conn.execute(select(shops).where(shops.c.slug == slug)).first()
        return ShopRecord.from_row(row) if row else None

    def by_shopify_domain(self, domain: str) -> ShopRecord | None:
        stmt = select(shops).where(shops.c.shopify_domain == domain.strip().lower())
        row = self.conn.execute(stmt).first()
        return ShopRecord.from_row(row) if row else None

    def by_id(self, shop_id: int) -> ShopRecord | None:
        row = self.conn.execute(select(shops).where(shops.c.id == shop_id)).first()
        return ShopRecord.from_row(row) if row else None

    def by_ids(self, shop_ids: Iterable[int]) -> dict[int, ShopRecord]:
        wanted = sorted(set(shop_ids))
        if not wanted:
            return {}
        rows = self.conn.execute(select(shops).where(shops.c.id.in_(wanted)))
        return {row.id: ShopRecord.from_row(row) for row in rows}

    def all(self) -> list[ShopRecord]:
        return [
            ShopRecord.from_row(r) for r in self.conn.execute(select(shops).order_by(shops.c.id))
        ]

    def update(self, shop_id: int, values: dict[str, Any]) -> None:
        self.conn.execute(update(shops).where(shops.c.id == shop_id).values(**values))

    def set_storefront_secrets(self, shop_id: int, secrets: list[str]) -> None:
        self.conn.execute(
            update(shops).where(shops.c.id == shop_id).values(storefront_secrets=secrets)
        )

    def insert(self, values: dict[str, Any]) -> ShopRecord:
        shop_id = self.conn.execute(
            insert(shops).values(**values).returning(shops.c.id)
        ).scalar_one()
        record = self.by_id(int(shop_id))
        assert record is not None
        return record
