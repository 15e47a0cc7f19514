"""PII stays home: the whole loop runs with a shopper whose name, address, street and phone
are in every event (signed storefront and Shopify events over HTTP into `cartnudge web`,
`cartnudge tick --now`, SMTP delivery, the click, the one-click unsubscribe, a second tick),
then every line every process logged is read: each is JSON, and none names the shopper."""

from __future__ import annotations

import json
import os
import re
import signal
from datetime import timedelta
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import httpx

from cartnudge.intake.examples import shopify_checkout, signed_shopify, storefront_event
from cartnudge.testing.smtp import SmtpSink
from tests.e2e.test_delivery import DAY, parsed, post_event, shop_record
from tests.e2e.test_first_run import cli, start_server

EMAIL = "zelda.quinlan@privacy.example"
FIRST_NAME, LAST_NAME = "Zelda", "Quinlan"
STREET, CITY, POSTCODE = "17 Larkspur Crescent", "Ashbourne", "DE6 1ZQ"
PHONE = "+44 7700 900461"
# Searched for in every log line, ignoring case; the email also by its local part.
SHOPPER = [EMAIL, "zelda.quinlan", FIRST_NAME, LAST_NAME, STREET, "Larkspur", POSTCODE]
SHOPPER += [PHONE, "7700 900461", "7700900461"]
LOG_FIELDS = {"time", "level", "logger", "message"}


def shopify_body() -> dict[str, Any]:
    """A checkout as Shopify sends it, with the shopper's contact and both addresses."""
    address = {
        "first_name": FIRST_NAME,
        "last_name": LAST_NAME,
        "name": f"{FIRST_NAME} {LAST_NAME}",
        "address1": STREET,
        "address2": "Flat 2",
        "city": CITY,
        "zip": POSTCODE,
        "country_code": "GB",
        "phone": PHONE,
    }
    body = shopify_checkout(
        token="chk-zelda", cart_token="crt-zelda", updated_at=DAY + timedelta(hours=10)
    )
    body.update(
        email=EMAIL.upper(),
        phone=PHONE,
        currency="GBP",
        presentment_currency="GBP",
        customer={"first_name": FIRST_NAME, "last_name": LAST_NAME, "email": EMAIL, "phone": PHONE},
        shipping_address=address,
        billing_address=address,
    )
    return body


def log_lines(output: str, *, operator_prefix: str | None = None) -> list[dict[str, Any]]:
    """Every line of a process's stderr, parsed: each must be one JSON log record. Where
    stdout is mixed in (the server's), its lines start with ``operator_prefix``."""
    records = []
    for line in output.splitlines():
        if operator_prefix is not None and line.startswith(operator_prefix):
            continue
        record = json.loads(line)  # a plain-text log line fails here
        assert isinstance(record, dict) and record.keys() >= LOG_FIELDS, line
        records.append(record)
    return records


def test_no_log_line_of_any_process_names_the_shopper(tmp_path: Path) -> None:
    runs: list[CompletedProcess[str]] = []

    def run(*args: str) -> CompletedProcess[str]:
        result = cli(env, *args)
        runs.append(result)
        assert result.returncode == 0, result.stderr
        return result

    def tick(hours: float) -> dict[str, Any]:
        at = DAY + timedelta(hours=hours)
        return dict(json.loads(run("tick", "--now", at.isoformat()).stdout))

    settings = {"CARTNUDGE_SECRET_KEY": "e2e-signing-key", "CARTNUDGE_LOG_LEVEL": "INFO"}
    # The data keys of this test process (if set), so that it reads the shop's secrets as
    # the processes it starts wrote them.
    settings.update({k: v for k, v in os.environ.items() if k == "CARTNUDGE_DATA_KEYS"})
    with SmtpSink() as sink:
        # The shop exists before the server starts, so the server's only stdout is its
        # one-line greeting and everything else it prints is a log line.
        env = {k: v for k, v in os.environ.items() if not k.startswith("CARTNUDGE_")}
        env.update(settings, CARTNUDGE_HOME=str(tmp_path / "var"))
        run(
            "shop", "add", "privacy", "--name", "Privacy Tea", "--timezone", "Europe/London",
            "--currency", "GBP", "--activated-at", "2026-01-01T00:00:00Z",
            "--shopify-domain", "privacy-tea.myshopify.com", "--shopify-secret", "shpss_e2e",
            "--sender", "Privacy Tea <hello@privacy-tea.example>",
            "--address", "1 Leaf Lane\\nBristol BS1 1AA", "--mail", f"smtp://127.0.0.1:{sink.port}",
        )  # fmt: skip
        process, env, base = start_server(tmp_path, "web", settings)
        try:
            shop = shop_record(env, "privacy")
            event = storefront_event(cart_id="zelda", occurred_at=DAY + timedelta(hours=10))
            event.update(email=EMAIL, first_name=FIRST_NAME)
            post_event(base, shop, event)
            checkout = signed_shopify(shop, "checkouts/create", shopify_body())
            answer = httpx.post(
                base + checkout.path, content=checkout.body, headers=checkout.headers
            )
            assert answer.status_code == 200, answer.text
            # A delivery refused for its signature is logged (an accepted one is not: the
            # inbox has it); its body, with all of the above, is not.
            forged = {**checkout.headers, "x-shopify-hmac-sha256": "Zm9yZ2Vk"}
            refused = httpx.post(base + checkout.path, content=checkout.body, headers=forged)
            assert refused.status_code == 401

            assert tick(12)["sender"]["sent"] >= 1
            message = parsed(sink.wait_for(1)[0].data)
            assert message["To"].lower() == EMAIL
            text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            click = re.search(rf"{re.escape(base)}/c/([A-Za-z0-9_-]+)", text)
            unsubscribe = re.search(
                rf"<({re.escape(base)}/u/([A-Za-z0-9_-]+))>", message["List-Unsubscribe"]
            )
            assert click is not None and unsubscribe is not None
            tokens = [click.group(1), unsubscribe.group(2)]

            assert httpx.get(click.group(0)).status_code == 302
            assert httpx.get(unsubscribe.group(1)).status_code == 200
            one_click = httpx.post(
                unsubscribe.group(1),
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert one_click.status_code == 200
            assert tick(36)["sender"]["sent"] == 0
        finally:
            process.send_signal(signal.SIGTERM)
            server_output, _ = process.communicate(timeout=30)

    server = log_lines(server_output, operator_prefix="cartnudge: ")
    commands = [record for result in runs for record in log_lines(result.stderr)]
    records = server + commands
    for record in records:
        # Both as written (JSON escapes non-ASCII) and as read.
        for text in (json.dumps(record), json.dumps(record, ensure_ascii=False)):
            for secret in [*SHOPPER, *tokens]:
                assert secret.lower() not in text.lower(), (secret, record)

    # The scan saw the real thing: the server's own lines, access lines (the click and the
    # unsubscribe with their tokens masked, the refused delivery), and the ingest writer's.
    access = [r["message"] for r in server if r["logger"] == "uvicorn.access"]
    assert len(records) >= 12 and len(access) >= 5, server_output
    assert any('"GET /c/… HTTP/1.1" 302' in line for line in access), access
    assert any('"GET /u/… HTTP/1.1" 200' in line for line in access), access
    assert any('"POST /u/… HTTP/1.1" 200' in line for line in access), access
    assert any('"POST /webhooks/shopify HTTP/1.1" 401' in line for line in access), access
    # No shopper's IP: a link page's line names no client; a refused webhook's names its
    # sender (a platform or the store's server).
    for line in access:
        if '"POST /webhooks/' not in line:
            assert line.startswith('- - "'), line
    assert {r["logger"] for r in server} >= {"uvicorn.error", "cartnudge.intake.writer_process"}
    assert "Traceback" not in server_output
