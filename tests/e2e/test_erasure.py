"""Erased means erased, as an owner would check it: `cartnudge serve` takes two shoppers'
checkouts over HTTP and a tick emails both through the file outbox; the owner erases one with
`cartnudge privacy erase` while serve (its web, ingest writer and loop processes) keeps
running; every file in the data folder is searched byte by byte at once, and again once
serve has stopped."""

from __future__ import annotations

import json
import signal
from datetime import timedelta
from pathlib import Path

import httpx

from cartnudge.intake.examples import signed_shopify
from tests.e2e.test_delivery import DAY, shop_record
from tests.e2e.test_first_run import cli, start_server
from tests.e2e.test_log_privacy import EMAIL, SHOPPER, shopify_body
from tests.privacy.test_erased_bytes import traces_on_disk

# The store's own ids for the checkouts, which name nobody.
TOKENS = {"chk-zelda": "chk-0001", "crt-zelda": "crt-0001"}
OTHER = {
    "zelda.quinlan@privacy.example": "yusuf.okafor@privacy.example",
    "Zelda": "Yusuf",
    "Quinlan": "Okafor",
    "17 Larkspur Crescent": "4 Thistlewood Row",
    "DE6 1ZQ": "LN4 7QX",
    "7700 900461": "7700 900982",
    "chk-zelda": "chk-0002",
    "crt-zelda": "crt-0002",
}
OTHER_TRACES = ["yusuf.okafor@privacy.example", "Yusuf", "Okafor", "4 Thistlewood Row", "LN4 7QX"]


def checkout_of(replaced: dict[str, str]) -> dict[str, object]:
    """The shopper's checkout (``test_log_privacy``), with ``replaced`` swapped in."""
    body = json.dumps(shopify_body())
    for old, new in replaced.items():
        body = body.replace(old, new).replace(old.upper(), new.upper())
    loaded: dict[str, object] = json.loads(body)
    return loaded


def test_an_erasure_while_serve_runs_leaves_no_byte_of_the_shopper(tmp_path: Path) -> None:
    home = tmp_path / "var"
    process, env, base = start_server(tmp_path, "serve", {"CARTNUDGE_LOG_LEVEL": "WARNING"})
    try:
        shop = shop_record(env, "demo")
        for body in (checkout_of(TOKENS), checkout_of(OTHER)):
            checkout = signed_shopify(shop, "checkouts/create", body)
            answer = httpx.post(
                base + checkout.path, content=checkout.body, headers=checkout.headers
            )
            assert answer.status_code == 200, answer.text
        ticked = cli(env, "tick", "--now", (DAY + timedelta(hours=12)).isoformat())
        assert ticked.returncode == 0, ticked.stderr
        assert json.loads(ticked.stdout)["sender"]["sent"] == 2
        before = traces_on_disk(home, SHOPPER)
        assert any(where.endswith(".eml") for where in before[EMAIL]), before

        erased = cli(env, "privacy", "erase", "--shop", "demo", "--email", EMAIL, "--yes")

        assert erased.returncode == 0, erased.stderr
        report = json.loads(erased.stdout)
        assert report["erased"]["carts"] == 1
        # Already while serve runs (a backup taken now, a crash now, would copy these files).
        running = traces_on_disk(home, SHOPPER)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert "Traceback" not in output, output

    assert running == {}
    assert traces_on_disk(home, SHOPPER) == {}
    kept = traces_on_disk(home, OTHER_TRACES)
    assert set(kept) == set(OTHER_TRACES), kept
    assert any(where.endswith(".eml") for where in kept[OTHER_TRACES[0]]), kept
    # The checkpoint was done while serve's processes were at work, not only at its exit.
    assert report["old_copies_dropped"] is True
