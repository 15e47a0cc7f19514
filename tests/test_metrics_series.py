"""/metrics after a reminder's whole path (webhook in, a loops pass, the email out, an
unsubscribe): the loops' moves, the sends by outcome, the lag from due to sent and the
unsubscribes are there, each moved by what happened."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cartnudge.clock import FrozenClock
from cartnudge.config import Settings
from cartnudge.shops.repository import ShopRecord
from cartnudge.timing.waiter import wake_due
from cartnudge.worker import Loops
from tests.conftest import KEY, T0
from tests.delivery.helpers import H, post


def value(text: str, series: str) -> float:
    """A series' value in a text exposition (0 when it is not there yet)."""
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


SERIES = (
    'cartnudge_waiter_moves_total{move="reminders"}',
    'cartnudge_sends_total{outcome="sent"}',
    "cartnudge_send_lag_seconds_count",
    'cartnudge_send_lag_seconds_bucket{le="300.0"}',
    "cartnudge_loops_pass_seconds_count",
    'cartnudge_unsubscribes_total{source="one_click"}',
    'cartnudge_webhooks_accepted_total{lane="storefront",outcome="applied"}',
)


def test_metrics_after_a_reminders_whole_path(
    client: TestClient,
    engine: Engine,
    sender_shop: ShopRecord,
    clock: FrozenClock,
    tmp_path: Path,
) -> None:
    before = client.get("/metrics").text
    post(client, sender_shop, cart_id="c1")
    settings = Settings(
        home=tmp_path, public_url="http://testserver", secret_key=KEY, outbox_dir=tmp_path / "out"
    )
    wake_due(engine, T0 + 2 * H)  # the reminder is decided, due at once
    # The sender's pass two minutes later: the lag is counted from the due time.
    loops = Loops(engine, settings, clock=FrozenClock(T0 + 2 * H + timedelta(minutes=2)))
    try:
        report = loops.run_once()
    finally:
        loops.providers.close()
    assert report["sender"]["sent"] == 1
    [eml] = list((tmp_path / "out").rglob("*.eml"))
    link = re.search(r"http://testserver(/u/[A-Za-z0-9_-]+)", eml.read_text()).group(1)  # type: ignore[union-attr]
    clock.now = T0 + 3 * H
    assert client.post(link, content=b"List-Unsubscribe=One-Click").status_code == 200
    assert client.post(link, content=b"List-Unsubscribe=One-Click").status_code == 200

    after = client.get("/metrics").text

    moved = {series: value(after, series) - value(before, series) for series in SERIES}
    assert moved == {
        'cartnudge_waiter_moves_total{move="reminders"}': 1,
        'cartnudge_sends_total{outcome="sent"}': 1,
        "cartnudge_send_lag_seconds_count": 1,
        'cartnudge_send_lag_seconds_bucket{le="300.0"}': 1,
        "cartnudge_loops_pass_seconds_count": 1,
        'cartnudge_unsubscribes_total{source="one_click"}': 1,  # once per address
        'cartnudge_webhooks_accepted_total{lane="storefront",outcome="applied"}': 1,
    }
    lag = value(after, "cartnudge_send_lag_seconds_sum") - value(
        before, "cartnudge_send_lag_seconds_sum"
    )
    assert lag == 120
