"""Waiter benchmark: carts decided and enqueued per second, and the cost of a sweep that
finds nothing due, with few or many open carts (the due-timer index keeps it flat).

    .venv/bin/python -m bench.waiter [--due 20000] [--open 10000 100000] [--sqlite-only]

Each figure runs on a new database: SQLite (WAL, synchronous=FULL) in a temporary folder,
and a private PostgreSQL 15 (fsync on) unless --sqlite-only.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from bench.ingest import PostgresDatabases
from cartnudge.db.engine import make_engine
from cartnudge.db.migrate import upgrade
from cartnudge.db.models import Send, table_of
from cartnudge.db.session import reading, writing
from cartnudge.shops.service import add_shop
from cartnudge.testing.carts import insert_open_carts
from cartnudge.timing.waiter import wake_due

T0 = datetime(2026, 3, 14, 15, 0, tzinfo=UTC)


def fill(engine: Engine, due: int, waiting: int) -> None:
    """``due`` carts whose first reminder is due at T0 + 2 h, ``waiting`` due much later."""
    with writing(engine) as conn:
        shop = add_shop(
            conn, slug="bench", name="Bench", timezone="Europe/London", currency="EUR", now=T0
        )
    insert_open_carts(engine, shop.id, due, active_at=T0, wake_at=T0 + timedelta(hours=2))
    insert_open_carts(engine, shop.id, waiting, active_at=T0, wake_at=T0 + timedelta(days=3))


def decide_figure(url: str, due: int) -> dict[str, Any]:
    engine = make_engine(url)
    upgrade(engine)
    fill(engine, due, 0)
    started = time.perf_counter()
    report = wake_due(engine, T0 + timedelta(hours=2))
    elapsed = time.perf_counter() - started
    with reading(engine) as conn:
        queued = conn.execute(select(func.count()).select_from(table_of(Send))).scalar_one()
    engine.dispose()
    assert report.moves["reminders"] == due == queued, (report.as_dict(), queued)
    return {"due": due, "seconds": round(elapsed, 2), "carts_per_s": round(due / elapsed)}


def sweep_figure(url: str, open_carts: int, passes: int = 200) -> dict[str, Any]:
    engine = make_engine(url)
    upgrade(engine)
    fill(engine, 0, open_carts)
    now = T0 + timedelta(hours=2)
    wake_due(engine, now)  # warm
    started = time.perf_counter()
    for _ in range(passes):
        assert wake_due(engine, now).woken == 0
    elapsed = time.perf_counter() - started
    engine.dispose()
    return {"open": open_carts, "sweep_ms": round(elapsed / passes * 1000, 3)}


def run_figures(
    rows: list[str], label: str, url_for: Callable[[str], str], args: argparse.Namespace
) -> None:
    decided = decide_figure(url_for("decide"), args.due)
    rows.append(
        f"| {label} | decided and enqueued | {decided['carts_per_s']:,} carts/s "
        f"| {args.due:,} due carts in {decided['seconds']} s |"
    )
    for n in args.open:
        sweep = sweep_figure(url_for(f"sweep{n}"), n)
        rows.append(
            f"| {label} | sweep with nothing due | {sweep['sweep_ms']} ms "
            f"| {n:,} open carts, none due |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.waiter", description=__doc__)
    parser.add_argument("--due", type=int, default=20_000)
    parser.add_argument("--open", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        run_figures(rows, "SQLite", lambda name: f"sqlite:///{Path(tmp) / name}.db", args)
        if not args.sqlite_only:
            with PostgresDatabases() as databases:
                run_figures(rows, "PostgreSQL", lambda _name: databases.fresh(), args)
    print("| database | figure | result | setup |")
    print("| --- | --- | ---: | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
