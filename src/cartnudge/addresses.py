"""Email addresses: one mailbox, or a reason why not. Intake, carts and the sender all ask
here, so an address is usable everywhere or nowhere.

The check is email-validator's (RFC 5321/5322 syntax, IDNA for the domain), without DNS:
no list of addresses (``a@x.com, b@y.com``), no display name, no quoted local part, no
domain literal, nothing a header would need to quote. A non-ASCII local part is a real
address; it needs a mail server that offers SMTPUTF8, which the provider checks per send.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

_QUOTED = re.compile(r"'[^']{2,}'")
MAX_ADDRESS = 320  # the column's width, and more than RFC 5321 allows (254)


class AddressError(ValueError):
    """Not one usable mailbox. The message says why without repeating the address."""


@dataclass(frozen=True, slots=True)
class Mailbox:
    address: str  # normalised: the domain in lower-case Unicode, the local part as typed
    wire: str  # as SMTP carries it: the domain in its IDNA (ASCII) form
    international: bool  # the local part is not ASCII: needs a server offering SMTPUTF8

    @property
    def key(self) -> str:
        """The form an address is matched on: lower case."""
        return self.address.lower()


@lru_cache(maxsize=4096)  # a batch of sends or events repeats the same few addresses
def mailbox(text: str) -> Mailbox:
    """``text`` as one mailbox, or ``AddressError`` saying why it is not one."""
    candidate = text.strip()
    if not candidate:
        raise AddressError("the address is empty")
    if len(candidate) > MAX_ADDRESS:
        raise AddressError(f"the address is longer than {MAX_ADDRESS} characters")
    try:
        valid = validate_email(
            candidate,
            check_deliverability=False,
            allow_smtputf8=True,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
        )
    except EmailNotValidError as exc:
        # The reason is kept on the cart and shown to the owner: it may name a character,
        # never a quoted piece of the address (an IDNA error quotes the label it tripped on).
        reason = _QUOTED.sub("'…'", str(exc))
        raise AddressError(f"not one email address: {reason}") from exc
    local = valid.local_part
    wire = f"{local}@{valid.ascii_domain}"
    return Mailbox(address=valid.normalized, wire=wire, international=not local.isascii())


def usable(text: str | None) -> bool:
    if text is None:
        return False
    try:
        mailbox(text)
    except AddressError:
        return False
    return True


def masked(address: str | None) -> str:
    """An address as pages show it to someone who need not see it whole: its first
    letter and its domain (``a•••@example.com``)."""
    if not address:
        return ""
    local, _, domain = address.partition("@")
    return f"{local[:1]}•••@{domain}"
