"""Every SQL statement of the dashboard's accounts: users, their shops, sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from cartnudge.db.models import Shop, User, UserShop, WebSession

users = User
user_shops = UserShop
sessions = WebSession
shops = Shop


class AccountRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def user_by_login(self, login: str) -> Any:
        return self.conn.execute(select(users).where(users.c.login == login)).first()

    def user_by_id(self, user_id: int) -> Any:
        return self.conn.execute(select(users).where(users.c.id == user_id)).first()

    def all_users(self) -> list[Any]:
        return list(self.conn.execute(select(users).order_by(users.c.login)))

    def count_users(self) -> int:
        return len(self.conn.execute(select(users.c.id).limit(1)).all())

    def add_user(self, values: dict[str, Any]) -> int:
        return int(
            self.conn.execute(insert(users).values(**values).returning(users.c.id)).scalar_one()
        )

    def update_user(self, user_id: int, values: dict[str, Any]) -> None:
        self.conn.execute(update(users).where(users.c.id == user_id).values(**values))

    def remove_user(self, user_id: int) -> None:
        self.conn.execute(delete(users).where(users.c.id == user_id))

    def shop_ids_of(self, user_id: int) -> list[int]:
        return list(
            self.conn.scalars(select(user_shops.c.shop_id).where(user_shops.c.user_id == user_id))
        )

    def shop_slugs_of(self, user_id: int) -> list[str]:
        return list(
            self.conn.scalars(
                select(shops.c.slug)
                .join(user_shops, user_shops.c.shop_id == shops.c.id)
                .where(user_shops.c.user_id == user_id)
                .order_by(shops.c.slug)
            )
        )

    def give_shops(self, user_id: int, shop_ids: list[int]) -> None:
        have = set(self.shop_ids_of(user_id))
        rows = [{"shop_id": s, "user_id": user_id} for s in shop_ids if s not in have]
        if rows:
            self.conn.execute(insert(user_shops), rows)

    def start_session(self, values: dict[str, Any]) -> None:
        self.conn.execute(insert(sessions).values(**values))

    def session(self, token_hash: str) -> Any:
        """The session and its user, in one read."""
        return self.conn.execute(
            select(
                sessions.c.token_hash,
                sessions.c.csrf,
                sessions.c.expires_at,
                users.c.id.label("user_id"),
                users.c.login,
                users.c.role,
                users.c.must_change_password,
            )
            .join(users, users.c.id == sessions.c.user_id)
            .where(sessions.c.token_hash == token_hash)
        ).first()

    def end_session(self, token_hash: str) -> None:
        self.conn.execute(delete(sessions).where(sessions.c.token_hash == token_hash))

    def end_sessions_of(self, user_id: int, *, keep: str | None = None) -> None:
        stmt = delete(sessions).where(sessions.c.user_id == user_id)
        if keep is not None:
            stmt = stmt.where(sessions.c.token_hash != keep)
        self.conn.execute(stmt)

    def end_expired_sessions(self, now: datetime) -> int:
        return self.conn.execute(delete(sessions).where(sessions.c.expires_at <= now)).rowcount
