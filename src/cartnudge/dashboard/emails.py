"""An email as the shopper received it, made safe for the owner to read: its headers (the
shopper's address masked), its text part, and its HTML part with every link disarmed.

The links in a reminder are live: the tracked return link counts a click, the unsubscribe
link stops the address. An owner reading the email must do neither, so the HTML shown has
no ``href`` (nor any other attribute that navigates or submits); each link's URL stays
readable as its ``title``. Pure: no I/O.
"""

from __future__ import annotations

import email
import email.policy
import html
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses
from html.parser import HTMLParser

from cartnudge.addresses import masked

# Headers that name the shopper's address: shown masked, as every page shows an address.
ADDRESS_HEADERS = frozenset({"to", "cc", "bcc", "delivered-to"})
# Attributes that navigate, submit or ping when used: dropped from every element.
_LIVE_ATTRIBUTES = frozenset({"href", "xlink:href", "action", "formaction", "ping"})
# Elements dropped with their content (a script) or on their own (the others).
_DROPPED_WITH_CONTENT = frozenset({"script"})
_DROPPED = frozenset({"base"})


@dataclass(frozen=True, slots=True)
class EmailView:
    headers: list[tuple[str, str]]  # in the email's order, addresses masked
    text: str | None  # the text/plain part
    html: str | None  # the text/html part, links disarmed


def read_email(raw: bytes) -> EmailView:
    """The email ``raw`` (RFC 5322 bytes, as handed to the mail route) for the owner."""
    parsed = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    headers = [(name, _shown(name, str(value))) for name, value in parsed.items()]
    return EmailView(headers, _part(parsed, "plain"), _disarmed(_part(parsed, "html")))


def _part(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return None
    content = part.get_content()
    return content if isinstance(content, str) else None


def _shown(name: str, value: str) -> str:
    if name.lower() not in ADDRESS_HEADERS:
        return value
    return ", ".join(
        # Written out by hand: ``formataddr`` refuses the mask's non-ASCII dots.
        f"{display} <{masked(address)}>" if display else masked(address)
        for display, address in getaddresses([value])
    )


def _disarmed(document: str | None) -> str | None:
    if document is None:
        return None
    parser = _Disarming()
    parser.feed(document)
    parser.close()
    return "".join(parser.out)


class _Disarming(HTMLParser):
    """Writes the document back as it came, less what could navigate: ``href`` and its
    kind on every element (a link's URL kept as its title), scripts, ``<base>``, and a
    ``<meta http-equiv>`` (a refresh). Comments go; text is re-escaped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skipping: str | None = None  # inside a dropped element's content
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, "")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, " /")

    def _start(self, tag: str, attrs: list[tuple[str, str | None]], end: str) -> None:
        if self._skipping:
            return
        if tag in _DROPPED_WITH_CONTENT:
            self._skipping = tag if not end else None
            return
        if tag in _DROPPED or (tag == "meta" and any(n == "http-equiv" for n, _ in attrs)):
            return
        self._in_style = tag == "style" and not end
        kept: list[tuple[str, str | None]] = []
        link = None
        for name, value in attrs:
            if name in _LIVE_ATTRIBUTES:
                link = link or value
            elif not name.startswith("on") and name != "title":
                kept.append((name, value))
        title = link or next((v for n, v in attrs if n == "title"), None)
        if title is not None:
            kept.append(("title", title))
        written = "".join(
            f" {name}" if value is None else f' {name}="{html.escape(value, quote=True)}"'
            for name, value in kept
        )
        self.out.append(f"<{tag}{written}{end}>")

    def handle_endtag(self, tag: str) -> None:
        if self._skipping:
            if tag == self._skipping:
                self._skipping = None
            return
        self._in_style = False
        if tag not in _DROPPED_WITH_CONTENT and tag not in _DROPPED:
            self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        # A style sheet is raw text: escaping it would break its selectors.
        self.out.append(data if self._in_style else html.escape(data, quote=False))

    def handle_decl(self, decl: str) -> None:
        if decl.lower().startswith("doctype"):
            self.out.append(f"<!{decl}>")
