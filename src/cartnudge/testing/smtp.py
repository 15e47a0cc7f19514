"""A real SMTP server for tests and benchmarks: aiosmtpd on 127.0.0.1, in its own thread.

``SmtpSink`` records what it receives and can be told to misbehave the way real relays do
(defer, refuse, drop the connection, stop answering), so the providers are tested against the
protocol itself rather than a mock of smtplib. It stores the raw bytes and parses nothing: the
benchmark pushes hundreds of emails a second through it on a small machine.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from cartnudge.testing.postgres import free_port
from cartnudge.testing.started import Started

Stage = Literal["mail", "rcpt", "data", "end"]
"""Where a fault strikes: the reply to MAIL FROM, to RCPT TO, to DATA (instead of 354), or
the reply after the body ("end": the server has the whole email by then)."""

Action = Literal["reply", "drop", "stall"]
START_TIMEOUT_S = 10
STOP_TIMEOUT_S = 5
CLOSE_GRACE_S = 1.0  # how long disconnect_all lets a TLS connection close politely


@dataclass(frozen=True, slots=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  # the message as sent, dot-unstuffed, CRLF line ends
    login: str | None  # the user the client authenticated as, if it did


@dataclass(slots=True)
class _Fault:
    stage: Stage
    action: Action
    reply: str
    remaining: int


class SmtpSink(Started):
    """An SMTP server on 127.0.0.1 and a free port, recording every email it accepts.

    ``tls_context`` offers STARTTLS (``require_starttls`` refuses mail without it), or, with
    ``implicit_tls``, wraps every connection in TLS from the first byte (``smtps://``).
    ``auth=(user, password)`` requires that login before MAIL FROM; AUTH is offered only
    over TLS unless ``auth_require_tls=False`` (a relay on this machine).
    ``smtputf8=False`` stops offering SMTPUTF8, as many relays do not.
    Faults (``fail_next``, ``drop_next``, ``stall_next``) apply to the next transactions that
    reach their stage, in the order they were set up.
    """

    def __init__(
        self,
        *,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        implicit_tls: bool = False,
        auth: tuple[str, str] | None = None,
        auth_require_tls: bool = True,
        smtputf8: bool = True,
    ) -> None:
        if implicit_tls and tls_context is None:
            raise ValueError("implicit TLS needs a tls_context")
        self.host = "127.0.0.1"
        self.port = free_port()
        self.implicit_tls = implicit_tls
        # aiosmtpd offers AUTH only after STARTTLS, unless told otherwise; an implicit TLS
        # connection is encrypted too, but aiosmtpd does not know that.
        self.auth_require_tls = auth_require_tls and not implicit_tls
        self._auth = auth
        self._lock = threading.Condition()
        self._received: list[Received] = []
        self._faults: list[_Fault] = []
        self._opened = 0  # connections accepted since start (the start-up probe excluded)
        self._open: set[_SinkSMTP] = set()  # live connections; touched in the server thread only
        smtp_options: dict[str, Any] = {
            "tls_context": None if implicit_tls else tls_context,
            "require_starttls": require_starttls,
            "enable_SMTPUTF8": smtputf8,
        }
        if auth is not None:
            smtp_options["authenticator"] = self._authenticate
            smtp_options["auth_required"] = True
        self._controller = _Controller(
            self,
            _Handler(self),
            hostname=self.host,
            port=self.port,
            ssl_context=tls_context if implicit_tls else None,
            server_hostname="cartnudge-sink",  # else aiosmtpd asks DNS, once per connection
            ready_timeout=START_TIMEOUT_S,
            **smtp_options,
        )
        self._running = False

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> SmtpSink:
        self._controller.start()
        # start() opened one probe connection to make sure the server answers; not ours.
        with self._lock:
            self._opened = 0
        self._running = True
        return self

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        try:
            # Cut client connections first, so no transport is left for the garbage
            # collector to warn about once the loop has stopped.
            self._run(self._disconnect_all(None, grace_s=0))
        finally:
            self._controller.stop()

    # -- what happened --------------------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        """The emails accepted so far, in order (a copy)."""
        with self._lock:
            return list(self._received)

    @property
    def connections(self) -> int:
        """How many connections clients have opened since the server started."""
        with self._lock:
            return self._opened

    def wait_for(self, count: int, timeout_s: float = 5.0) -> list[Received]:
        """Wait until at least ``count`` emails arrived; all of them, or ``TimeoutError``."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._received) >= count, timeout_s):
                raise TimeoutError(
                    f"{len(self._received)} of {count} emails arrived within {timeout_s} s"
                )
            return list(self._received)

    # -- making it misbehave --------------------------------------------------------------

    def fail_next(self, stage: Stage, reply: str, *, times: int = 1) -> None:
        """Answer ``reply`` (e.g. ``"451 4.3.0 Try again later"``) instead of accepting, the
        next ``times`` times a client reaches ``stage``."""
        self._add_fault(_Fault(stage, "reply", reply, times))

    def drop_next(self, stage: Stage, *, times: int = 1) -> None:
        """Close the connection instead of answering at ``stage``. At ``"end"`` the email was
        received (and is recorded) but the client never hears so: a crash after queueing."""
        self._add_fault(_Fault(stage, "drop", "", times))

    def stall_next(self, stage: Stage, *, times: int = 1) -> None:
        """Never answer at ``stage`` (the client's timeout has to notice). At ``"end"`` the
        email is recorded, as with ``drop_next``."""
        self._add_fault(_Fault(stage, "stall", "", times))

    def disconnect_all(self, farewell: str | None = None) -> None:
        """Close every open connection, as a relay does to idle clients; optionally saying
        ``farewell`` first (e.g. ``"421 4.4.2 Idle timeout"``)."""
        self._run(self._disconnect_all(farewell, grace_s=CLOSE_GRACE_S))

    def _run(self, work: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(work, self._controller.loop).result(STOP_TIMEOUT_S)

    # -- called in the server thread ------------------------------------------------------

    def _add_fault(self, fault: _Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, stage: Stage) -> _Fault | None:
        if not self._faults:  # the common case, without the lock
            return None
        with self._lock:
            for fault in self._faults:
                if fault.stage == stage:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _record(self, envelope: Envelope, session: Session) -> None:
        auth = session.auth_data  # what _authenticate accepted
        received = Received(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=envelope.original_content or b"",
            login=auth.login.decode() if isinstance(auth, LoginPassword) else None,
        )
        with self._lock:
            self._received.append(received)
            self._lock.notify_all()

    def _connected(self) -> None:
        with self._lock:
            self._opened += 1

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert self._auth is not None
        user, password = self._auth
        ok = (
            isinstance(data, LoginPassword)
            and data.login == user.encode()
            and data.password == password.encode()
        )
        # handled=False: let aiosmtpd answer a refusal with its standard 535.
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    async def _disconnect_all(self, farewell: str | None, *, grace_s: float) -> None:
        for server in list(self._open):
            transport = server.transport
            if not isinstance(transport, asyncio.WriteTransport) or transport.is_closing():
                continue  # already on its way out (a fault dropped it, the client left)
            if farewell is not None:
                transport.write(farewell.encode() + b"\r\n")
            transport.close()
        # Wait until the server has let go of them, so the client's next command surely
        # meets a closed connection. A TLS close waits for the client's answer; a client
        # that is not reading gets cut off.
        deadline = time.monotonic() + grace_s
        while self._open and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        for server in list(self._open):
            if isinstance(server.transport, asyncio.WriteTransport):
                server.transport.abort()
        deadline = time.monotonic() + CLOSE_GRACE_S
        while self._open and time.monotonic() < deadline:
            await asyncio.sleep(0.001)


class _SinkSMTP(SMTP):
    """aiosmtpd's server, with the sink's faults at MAIL, RCPT and DATA."""

    def __init__(self, sink: SmtpSink, handler: Any, **options: Any) -> None:
        super().__init__(handler, **options)
        self.sink = sink
        self._tracked = False
        # Set here rather than passed: passing False with auth_required makes aiosmtpd warn
        # (a test error) even where the channel is encrypted (implicit TLS) or local.
        self._auth_require_tls = sink.auth_require_tls

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self._tracked:  # called again after STARTTLS, on the same connection
            self._tracked = True
            self.sink._open.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.sink._open.discard(self)
        super().connection_lost(error)

    def close_connection(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def misbehave(self, stage: Stage) -> bool:
        """Apply the next fault for ``stage``, if any; True when it replaced the answer."""
        fault = self.sink._take_fault(stage)
        if fault is None:
            return False
        if fault.action == "reply":
            await self.push(fault.reply)
            return True
        if fault.action == "drop":
            self.close_connection()
        # Closing the connection cancels this coroutine; a stall waits for the client to go.
        await asyncio.get_running_loop().create_future()
        return True  # never reached: the coroutine is cancelled first

    async def smtp_MAIL(self, arg: str | None) -> None:
        if not await self.misbehave("mail"):
            await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        if not await self.misbehave("rcpt"):
            await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str) -> None:
        if not await self.misbehave("data"):
            await super().smtp_DATA(arg)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault = self.sink._take_fault("end")
        if fault is not None and fault.action == "reply":
            return fault.reply
        self.sink._record(envelope, session)
        if fault is not None:
            assert isinstance(server, _SinkSMTP)
            if fault.action == "drop":
                server.close_connection()
            await asyncio.get_running_loop().create_future()  # cancelled when the client goes
        return "250 2.0.0 OK queued"


class _Controller(Controller):
    def __init__(self, sink: SmtpSink, handler: _Handler, **options: Any) -> None:
        super().__init__(handler, **options)
        self.sink = sink

    def factory(self) -> SMTP:
        self.sink._connected()  # aiosmtpd builds one SMTP object per connection
        return _SinkSMTP(self.sink, self.handler, **self.SMTP_kwargs)


def self_signed_tls(tmp_dir: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A certificate for localhost and 127.0.0.1, made with the openssl CLI: the server's
    context, and a client context that trusts it (and checks the host name, as in production)."""
    cert, key = tmp_dir / "sink-cert.pem", tmp_dir / "sink-key.pem"
    # A fixed argument list from this file, no shell: nothing from outside reaches the command.
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client
