"""Pure rules of tracked links: where a click lands."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

CAMPAIGN = {"utm_source": "cartnudge", "utm_medium": "email", "utm_campaign": "cart_recovery"}


def landing_url(return_url: str | None, step: int) -> str | None:
    """The cart's return URL with our UTM tags (replacing any it had), or ``None`` if it is
    not an http(s) URL we would send a shopper to."""
    if not return_url:
        return None
    parts = urlsplit(return_url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        return None
    tags = {**CAMPAIGN, "utm_content": f"step{step}"}
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in tags]
    return urlunsplit(parts._replace(query=urlencode([*query, *tags.items()])))
