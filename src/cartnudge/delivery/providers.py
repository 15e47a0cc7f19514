"""Email providers: where a composed reminder goes, and what became of it.

Every delivery ends in one of four outcomes. ``Retry`` means the email certainly did not
leave, so trying again later cannot produce a duplicate. ``Ambiguous`` means it may have been
delivered (plain SMTP lost the connection after the body went out and before the server
answered); it is never resent blindly, because a duplicate reminder is worse than a missing one.

A shop's mail route is a URL: ``file`` (one ``.eml`` per email in an outbox folder, for trying
cartnudge out), ``smtp://``, ``smtp+starttls://`` or ``smtps://``.
"""

from __future__ import annotations

import contextlib
import os
import re
import smtplib
import ssl
import tempfile
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import EmailPolicy
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import quote, unquote, urlsplit

# --- mail routes -------------------------------------------------------------------------

Security = Literal["none", "starttls", "tls"]
_SCHEMES: dict[str, tuple[Security, int]] = {
    "smtp": ("none", 25),
    "smtp+starttls": ("starttls", 587),
    "smtps": ("tls", 465),
}
_SCHEME_OF = {security: scheme for scheme, (security, _) in _SCHEMES.items()}
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_FORMS = "use file, smtp://host[:port], smtp+starttls://user:pass@host[:port] or smtps://…"


class MailRouteError(ValueError):
    """A mail URL cartnudge refuses. The message never contains the password."""


@dataclass(frozen=True, slots=True)
class MailRoute:
    kind: Literal["file", "smtp"]
    host: str | None = None
    port: int | None = None
    security: Security = "none"
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # kept out of reprs and logs

    def redacted(self) -> str:
        """The route as a URL the owner may see: the password is shown as ``***``."""
        if self.kind == "file":
            return "file"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        user = f"{quote(self.username, safe='')}:***@" if self.username is not None else ""
        return f"{_SCHEME_OF[self.security]}://{user}{host}:{self.port}"


FILE_ROUTE = MailRoute(kind="file")


def parse_mail_url(url: str | None) -> MailRoute:
    """The route a mail URL names, or a one-line ``MailRouteError`` saying what is wrong."""
    if url is None or url.strip() == "file":
        return FILE_ROUTE
    text = url.strip()
    if "://" not in text:
        raise MailRouteError(f"not a mail route: {_FORMS}")
    # Messages below name parts of the URL, never the URL itself: it may hold a password.
    parts = urlsplit(text)
    if parts.scheme not in _SCHEMES:
        raise MailRouteError(f"unknown mail route scheme {parts.scheme!r}: {_FORMS}")
    security, default_port = _SCHEMES[parts.scheme]
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise MailRouteError(
            "a mail URL has no path, query or fragment "
            "(percent-encode any /, ?, # or @ in the user or password)"
        )
    host = parts.hostname
    if not host:
        raise MailRouteError(f"the mail URL has no host: {_FORMS}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise MailRouteError("the mail URL's port must be a number from 1 to 65535")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if username is not None or password is not None:
        if not username or not password:
            raise MailRouteError("SMTP credentials need both a user and a password (user:pass@)")
        if security == "none" and host not in _LOCAL_HOSTS:
            raise MailRouteError(
                f"refusing to send the SMTP password in clear text to {host}: "
                "use smtp+starttls:// or smtps://"
            )
    return MailRoute(
        kind="smtp",
        host=host,
        port=port or default_port,
        security=security,
        username=username,
        password=password,
    )


# --- outcomes and the provider port ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivered:
    detail: str  # the server's reply, or the file written


@dataclass(frozen=True, slots=True)
class Retry:
    reason: str  # certainly not delivered: safe to try again later


@dataclass(frozen=True, slots=True)
class Failed:
    reason: str  # refused for good (5xx, bad recipient)
    bounce: bool = False  # the address itself is bad or gone: never email it again


@dataclass(frozen=True, slots=True)
class Ambiguous:
    reason: str  # may or may not have been delivered: never resend blindly


Outcome = Delivered | Retry | Failed | Ambiguous
# An email to deliver: bytes as composed (RFC 5322, CRLF line ends), or a message object.
Message = bytes | EmailMessage


class Provider(Protocol):
    name: str  # "file" or "smtp"
    resend_safe: bool  # True when delivering the same key twice cannot produce two emails

    def deliver(self, message: Message, *, sender: str, recipient: str, key: str) -> Outcome: ...

    def close(self) -> None: ...


# --- the file outbox ---------------------------------------------------------------------

_SAFE_KEY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


class FileProvider:
    """One ``<key>.eml`` per email in ``outbox``, for trying cartnudge without a mail server.

    The file appears whole or not at all (written aside, synced, then renamed over), and the
    same key always names the same file, so delivering twice leaves one email.
    """

    name = "file"
    resend_safe = True

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox

    def deliver(self, message: Message, *, sender: str, recipient: str, key: str) -> Outcome:
        if not _SAFE_KEY.fullmatch(key):
            raise ValueError(f"send key {key!r} cannot name a file")
        target = self.outbox / f"{key}.eml"
        temporary: str | None = None
        try:
            self.outbox.mkdir(parents=True, exist_ok=True)
            # A dot-name with another suffix: nobody reading *.eml sees a half-written file.
            fd, temporary = tempfile.mkstemp(dir=self.outbox, prefix=f".{key}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                out.write(message if isinstance(message, bytes) else message.as_bytes())
                out.flush()
                os.fsync(out.fileno())
            Path(temporary).replace(target)
            temporary = None
            _fsync_dir(self.outbox)  # the rename itself must survive a crash too
        except OSError as exc:
            # A full or read-only disk is transient from our side: the owner can fix it.
            return Retry(f"could not write {target}: {exc.strerror or exc}")
        finally:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    Path(temporary).unlink()
        return Delivered(str(target))

    def close(self) -> None:
        pass


# RFC 3463 enhanced codes about the address itself: 5.1.x (no such mailbox, bad domain,
# moved, null MX) and 5.2.1 (mailbox disabled). Policy refusals (5.7.x) are not bounces.
_ENHANCED = re.compile(rb"\s*5\.(\d{1,3})\.(\d{1,3})\b")


def _bad_address(code: int, reply: bytes) -> bool:
    """Whether a permanent refusal of a recipient says the address is bad or gone."""
    enhanced = _ENHANCED.match(reply)
    if enhanced is None:  # a server without enhanced codes: 550/551/553 name the mailbox
        return code in (550, 551, 553)
    subject, detail = int(enhanced[1]), int(enhanced[2])
    return subject == 1 or (subject, detail) == (2, 1)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- SMTP --------------------------------------------------------------------------------


class _Stale(Exception):
    """A kept-open connection turned out to be closed at the first command of a delivery."""


class SmtpProvider:
    """Delivers over one SMTP connection kept open across deliveries (one per worker thread).

    Opening a connection (TCP, TLS, EHLO, AUTH) costs several round trips, far more than one
    email; keeping it open is what lets one sender pass hundreds of emails a second to a relay.
    The DATA phase is driven here rather than by ``smtplib.SMTP.data`` so that a connection
    lost after the body went out is told apart from one lost before: the first is
    ``Ambiguous``, the second a safe ``Retry``.
    """

    name = "smtp"
    resend_safe = False  # plain SMTP has no idempotency key

    def __init__(
        self,
        route: MailRoute,
        *,
        timeout_s: float = 30,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if route.kind != "smtp" or route.host is None or route.port is None:
            raise ValueError(f"not an SMTP route: {route.redacted()}")
        self.route = route
        self.host = route.host
        self.port = route.port
        self.timeout_s = timeout_s
        self.ssl_context = ssl_context or ssl.create_default_context()
        self._smtp: smtplib.SMTP | None = None

    def deliver(self, message: Message, *, sender: str, recipient: str, key: str) -> Outcome:
        if any(c in address for address in (sender, recipient) for c in "\r\n<>"):
            return Failed("an address contains a line break or angle bracket")
        reused = self._smtp is not None
        try:
            return self._deliver(message, sender, recipient)
        except _Stale as stale:
            if not reused:
                return Retry(
                    f"{self._where()} lost the connection before the email was sent: {stale}"
                )
        # The server had dropped our idle connection. Nothing was sent on it, so open a fresh
        # one, once: a server that keeps dropping it is reported, not hammered.
        try:
            return self._deliver(message, sender, recipient)
        except _Stale as stale:
            return Retry(f"{self._where()} lost the connection before the email was sent: {stale}")

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()
        _close_quietly(smtp)

    # -- one delivery ---------------------------------------------------------------------

    def _deliver(self, message: Message, sender: str, recipient: str) -> Outcome:
        connected = self._connection()
        if not isinstance(connected, smtplib.SMTP):
            return connected
        smtp = connected
        international = not (sender + recipient).isascii()
        if international and not smtp.has_extn("smtputf8"):
            return Failed(f"{self._where()} does not accept international (SMTPUTF8) addresses")
        payload = _wire_bytes(message, international)
        options: list[str] = []
        if smtp.has_extn("size"):
            options.append(f"SIZE={len(payload)}")
        if international:
            options += ["SMTPUTF8", "BODY=8BITMIME"]
        elif not payload.isascii() and smtp.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")

        # Before the body goes out, the server cannot have the email: any failure is a Retry.
        try:
            code, reply = smtp.mail(sender, options)
        except smtplib.SMTPServerDisconnected as exc:
            self._drop()
            raise _Stale(str(exc)) from exc
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            return Retry(f"{self._where()} failed at MAIL FROM: {exc}")
        if code == 421:  # the server is closing this connection (an idle timeout, a restart)
            self._drop()
            raise _Stale(_reply_text(code, reply))
        if code != 250:
            return self._refused("MAIL FROM", code, reply)
        try:
            code, reply = smtp.rcpt(recipient)
            if code not in (250, 251):
                return self._refused("RCPT TO", code, reply)
            smtp.putcmd("data")
            code, reply = smtp.getreply()
            if code != 354:
                return self._refused("DATA", code, reply)
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            return Retry(f"{self._where()} lost the connection before the email was sent: {exc}")

        # From the first byte of the body on, the server may accept the email at any moment.
        try:
            smtp.send(payload)
            code, reply = smtp.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            return Ambiguous(
                f"{self._where()} lost the connection after the email was sent and before it "
                f"confirmed it ({exc}); it may have been delivered, so it is not resent"
            )
        if 200 <= code < 300:
            return Delivered(_reply_text(code, reply))
        if 400 <= code < 600:
            return self._refused("end of data", code, reply)
        self._drop()
        return Ambiguous(
            f"{self._where()} answered the email with {_reply_text(code, reply)!r}; it may "
            "have been delivered, so it is not resent"
        )

    def _refused(self, stage: str, code: int, reply: bytes) -> Retry | Failed:
        """A clear answer: nothing was accepted. Reset the session so the next email starts
        clean (RSET), or drop the connection if the server is closing it."""
        text = _reply_text(code, reply)
        if not 400 <= code < 600:
            # Not an SMTP refusal at all: whatever is talking is out of step with us.
            self._drop()
            return Retry(f"{self._where()} answered {stage} unexpectedly: {text}")
        if code == 421:
            self._drop()
        else:
            self._reset()
        if code == 530:  # "authentication required": the route lacks credentials, as with 535
            return Retry(
                f"{self._where()} requires authentication ({text}): add a user and password "
                "to the route"
            )
        if code >= 500:
            bounce = stage == "RCPT TO" and _bad_address(code, reply)
            return Failed(f"{self._where()} refused {stage}: {text}", bounce=bounce)
        return Retry(f"{self._where()} deferred {stage}: {text}")

    def _reset(self) -> None:
        if self._smtp is None:
            return
        try:
            code, _ = self._smtp.rset()
        except (smtplib.SMTPException, OSError):
            code = -1
        if code != 250:
            self._drop()

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        _close_quietly(smtp)

    # -- the connection -------------------------------------------------------------------

    def _connection(self) -> smtplib.SMTP | Retry:
        """The open connection, or a new one: connected, encrypted, greeted and logged in."""
        if self._smtp is not None:
            return self._smtp
        smtp: smtplib.SMTP | None = None
        try:
            # The constructors connect and read the greeting (SMTPConnectError unless 220);
            # given the host, they also check the certificate against it.
            if self.route.security == "tls":
                smtp = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout_s, context=self.ssl_context
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
            refused = self._set_up(smtp)
        except ssl.SSLError as exc:  # before OSError: it is one
            refused = Retry(f"TLS with {self._where()} failed: {exc}")
        except smtplib.SMTPAuthenticationError as exc:
            # The shop's configuration, not the recipient: keep retrying, loudly.
            refused = Retry(
                f"authentication to {self._where()} was refused "
                f"({_reply_text(exc.smtp_code, exc.smtp_error)}): check the route's user "
                "and password"
            )
        except smtplib.SMTPResponseException as exc:
            refused = Retry(
                f"{self._where()} refused the connection set-up: "
                f"{_reply_text(exc.smtp_code, exc.smtp_error)}"
            )
        except smtplib.SMTPServerDisconnected as exc:
            refused = Retry(f"{self._where()} closed the connection while it was set up: {exc}")
        except smtplib.SMTPException as exc:
            refused = Retry(f"{self._where()} failed while the connection was set up: {exc}")
        except OSError as exc:
            refused = Retry(f"could not connect to {self._where()}: {exc}")
        except BaseException:
            _close_quietly(smtp)
            raise
        if refused is not None or smtp is None:
            _close_quietly(smtp)
            return refused or Retry(f"could not connect to {self._where()}")
        self._smtp = smtp
        return smtp

    def _set_up(self, smtp: smtplib.SMTP) -> Retry | None:
        smtp.ehlo_or_helo_if_needed()
        if self.route.security == "starttls":
            if not smtp.has_extn("starttls"):
                return Retry(
                    f"{self._where()} does not offer STARTTLS, which the route requires "
                    "(smtp+starttls://); the email was not sent"
                )
            try:
                smtp.starttls(context=self.ssl_context)
            except smtplib.SMTPResponseException as exc:
                return Retry(
                    f"{self._where()} refused STARTTLS: "
                    f"{_reply_text(exc.smtp_code, exc.smtp_error)}"
                )
            smtp.ehlo_or_helo_if_needed()  # what the server offers may change under TLS
        if self.route.username is not None and self.route.password is not None:
            if not smtp.has_extn("auth"):
                return Retry(
                    f"{self._where()} does not offer authentication (AUTH), but the route "
                    "has a user and password"
                )
            smtp.login(self.route.username, self.route.password)
        return None

    def _where(self) -> str:
        return f"mail server {self.host}:{self.port}"


def _close_quietly(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        with contextlib.suppress(OSError):
            smtp.close()


def _wire_bytes(message: Message, international: bool) -> bytes:
    """The message as SMTP carries it: CRLF line ends, dot-stuffed, ended by ``.`` alone."""
    if isinstance(message, bytes):
        flat = message
    else:
        policy = message.policy.clone(linesep="\r\n")
        if international and isinstance(policy, EmailPolicy):
            policy = policy.clone(utf8=True)  # SMTPUTF8: headers carry UTF-8 as it is
        flat = message.as_bytes(policy=policy)
    # smtplib's quotedata fixes line ends and doubles leading dots; it works on text, and
    # latin-1 maps each byte to one character and back, so 8-bit bodies pass unchanged.
    quoted = smtplib.quotedata(flat.decode("latin-1")).encode("latin-1")
    if not quoted.endswith(b"\r\n"):
        quoted += b"\r\n"
    return quoted + b".\r\n"


def _reply_text(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return f"{code} {' '.join(text.split())}"
