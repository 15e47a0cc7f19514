"""The nightly sheet: at or after each shop's chosen hour (shop local time), its previous
local day's carts are written once, to a folder (``<slug>-carts-<day>.<format>``) or a
Google Sheet (``sheets:<spreadsheet id>``).

The loops run it every ``NIGHTLY_INTERVAL_S``; any number of workers may. A (shop, day) is
claimed with a row before it is written, so it is written by one of them only; a failure
is logged, kept on the row, and tried again after a wait that doubles from a minute to an
hour, never lost. Only the day just
past is due: a day missed while no worker ran is not written afterwards (``cartnudge
export`` writes any span on demand).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from cartnudge.config import Settings
from cartnudge.db.session import reading, writing
from cartnudge.export.files import write_file
from cartnudge.export.repository import claim, done_days, finish, shops_with_a_nightly_sheet
from cartnudge.export.sheet import HEADER, LINK_COLUMNS, LinkMaker, sheet_rows
from cartnudge.shops.days import day_span
from cartnudge.shops.repository import ShopRecord, ShopRepository

log = logging.getLogger(__name__)

NIGHTLY_INTERVAL_S = 60.0  # how often the loops look for a sheet that is due
MAX_RETRY_WAIT = timedelta(hours=1)
CLAIM_LEASE = timedelta(minutes=15)  # a worker that died holding a claim: retried after this
SHEETS = "sheets:"  # a destination that names a Google Sheet, not a folder
MAX_ERROR = 500  # characters of a failure kept on the claim


@dataclass(frozen=True, slots=True)
class NightlyConfig:
    """What the run needs from the process settings."""

    public_url: str
    key: bytes
    google_credentials: Path | None = None
    google_endpoint: str | None = None

    @classmethod
    def of(cls, settings: Settings) -> NightlyConfig:
        return cls(
            settings.public_url,
            settings.signing_key,
            settings.google_credentials_file,
            settings.google_sheets_endpoint,
        )


def due_day(shop: ShopRecord, now: datetime) -> date | None:
    """The local day whose sheet is due now, if any: yesterday, once today's hour came."""
    if shop.export_hour is None or not shop.export_to:
        return None
    local = now.astimezone(ZoneInfo(shop.timezone))
    if local.hour < shop.export_hour:
        return None
    return local.date() - timedelta(days=1)


def retry_after(attempt: int) -> timedelta:
    """The wait after a failed attempt: 1, 2, 4 … minutes, at most an hour, so a
    destination that stays broken is not tried (and logged) every minute all day."""
    return min(timedelta(minutes=2 ** (attempt - 1)), MAX_RETRY_WAIT)


def run_nightly(engine: Engine, now: datetime, config: NightlyConfig) -> list[dict[str, Any]]:
    """Write every sheet that is due and not yet written; what was written or failed."""
    with reading(engine) as conn:
        shops = ShopRepository(conn).by_ids(shops_with_a_nightly_sheet(conn))
        due = [(shop, day) for shop in shops.values() if (day := due_day(shop, now))]
        done = done_days(conn, [(shop.id, day) for shop, day in due])
    results: list[dict[str, Any]] = []
    for shop, day in due:
        if (shop.id, day) in done:
            continue
        with writing(engine, "nightly") as conn:
            attempt = claim(conn, shop.id, day, now, now + CLAIM_LEASE)
        if attempt is None:
            continue  # written meanwhile, another worker has it, or a failure's wait is on
        try:
            rows, target = write_day(engine, shop, day, now, config)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
            wait = retry_after(attempt)
            log.exception(
                "nightly sheet of %s for %s failed; tried again in %s", shop.slug, day, wait
            )
            with writing(engine, "nightly") as conn:
                finish(conn, shop.id, day, now, error=error, retry_at=now + wait)
            results.append({"shop": shop.slug, "day": day.isoformat(), "error": error})
            continue
        with writing(engine, "nightly") as conn:
            finish(conn, shop.id, day, now, rows=rows, target=target)
        log.info("nightly sheet of %s for %s: %d rows", shop.slug, day, rows)
        results.append({"shop": shop.slug, "day": day.isoformat(), "rows": rows, "to": target})
    return results


def write_day(
    engine: Engine, shop: ShopRecord, day: date, now: datetime, config: NightlyConfig
) -> tuple[int, str]:
    """Write the shop's sheet of ``day``; the rows written and where they went."""
    assert shop.export_to is not None
    links = LinkMaker.at(config.public_url, config.key, now)
    rows = sheet_rows(engine, shop, day_span(shop, day), links)
    if shop.export_to.startswith(SHEETS):
        if config.google_credentials is None:
            raise RuntimeError(
                "the destination is a Google Sheet but CARTNUDGE_GOOGLE_CREDENTIALS_FILE is not set"
            )
        # Imported here: only a shop that writes to a Google Sheet needs its client.
        from cartnudge.export.google_sheets import write_sheet

        written = write_sheet(  # the day's own tab in the shop's spreadsheet
            shop.export_to,
            day.isoformat(),
            list(HEADER),
            rows,
            credentials_file=config.google_credentials,
            endpoint=config.google_endpoint,
        )
        return int(written), shop.export_to
    folder = Path(shop.export_to)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{shop.slug}-carts-{day.isoformat()}.{shop.export_format}"
    written = write_file(
        path, shop.export_format, HEADER, rows, title=shop.slug, links=LINK_COLUMNS
    )
    return written, str(path)
