"""The providers against a real SMTP server (aiosmtpd, plain, STARTTLS, implicit TLS, AUTH) and
a real folder, and the mail URLs a shop owner may type."""

from __future__ import annotations

import email
import ssl
import threading
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartnudge.delivery.providers import (
    Ambiguous,
    Delivered,
    Failed,
    FileProvider,
    MailRoute,
    MailRouteError,
    Outcome,
    Retry,
    SmtpProvider,
    parse_mail_url,
)
from cartnudge.testing.postgres import free_port
from cartnudge.testing.smtp import SmtpSink, Stage, self_signed_tls

SENDER = "hello@mugs.example"
USER, PASSWORD = "mugs@relay", "p:ss/w@rd %"  # characters a URL must percent-encode


def reminder(n: int = 1, to: str = "ann@example.com") -> EmailMessage:
    """A small multipart reminder, with the lines SMTP has to take care with."""
    message = EmailMessage()
    message["From"] = f"Mugs <{SENDER}>"
    message["To"] = to
    message["Subject"] = f"You left {n} mug behind"
    message["Message-ID"] = f"<send-{n}@mugs.example>"
    # Non-ASCII text (8-bit), a line that starts with a dot, and a lone dot, which would end
    # the email early if the provider did not dot-stuff.
    message.set_content(f"Grüße!\nYour cart #{n} is waiting.\n.hidden\n.\nSee you\n")
    message.add_alternative(f"<p>Your cart #{n} is waiting.</p>", subtype="html")
    message.set_boundary(f"cart-{n}")  # else each rendering draws a new one
    return message


def on_the_wire(message: EmailMessage) -> bytes:
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


def deliver(
    provider: SmtpProvider | FileProvider, n: int = 1, to: str = "ann@example.com"
) -> Outcome:
    return provider.deliver(reminder(n, to), sender=SENDER, recipient=to, key=str(n))


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    return self_signed_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


Connect = Callable[..., SmtpProvider]


@pytest.fixture
def connect(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> Iterator[Connect]:
    """Providers for a URL, trusting the test certificate, closed after the test."""
    opened: list[SmtpProvider] = []

    def factory(url: str, *, timeout_s: float = 5, trust: bool = True) -> SmtpProvider:
        provider = SmtpProvider(
            parse_mail_url(url), timeout_s=timeout_s, ssl_context=tls[1] if trust else None
        )
        opened.append(provider)
        return provider

    yield factory
    for provider in opened:
        provider.close()


# --- delivering over SMTP ----------------------------------------------------------------


def test_plain_smtp_delivers_the_exact_message_to_the_envelope_recipient(
    sink: SmtpSink, connect: Connect
) -> None:
    provider = connect(f"smtp://{sink.host}:{sink.port}")
    message = reminder(7, "bob@example.com")

    outcome = provider.deliver(message, sender=SENDER, recipient="bob@example.com", key="7")

    assert isinstance(outcome, Delivered)
    assert outcome.detail.startswith("250")
    [got] = sink.received
    assert got.mail_from == SENDER
    assert got.rcpt_tos == ("bob@example.com",)
    assert got.data == on_the_wire(message)  # dots and 8-bit text intact
    parsed = email.message_from_bytes(got.data, policy=default)
    assert parsed["Subject"] == "You left 7 mug behind"
    body = parsed.get_body(("plain",))
    assert body is not None
    assert body.get_content().splitlines() == [
        "Grüße!",
        "Your cart #7 is waiting.",
        ".hidden",
        ".",
        "See you",
    ]


def test_starttls_with_a_login_delivers_encrypted_and_authenticated(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], connect: Connect
) -> None:
    with SmtpSink(tls_context=tls[0], require_starttls=True, auth=(USER, PASSWORD)) as sink:
        credentials = f"{quote(USER, safe='')}:{quote(PASSWORD, safe='')}"
        url = f"smtp+starttls://{credentials}@localhost:{sink.port}"
        provider = connect(url)
        message = reminder()

        outcome = provider.deliver(message, sender=SENDER, recipient="ann@example.com", key="1")

        assert isinstance(outcome, Delivered)
        [got] = sink.received
        assert got.login == USER
        assert got.data == on_the_wire(message)


def test_implicit_tls_with_a_login_delivers(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], connect: Connect
) -> None:
    with SmtpSink(tls_context=tls[0], implicit_tls=True, auth=(USER, PASSWORD)) as sink:
        url = f"smtps://{quote(USER, safe='')}:{quote(PASSWORD, safe='')}@127.0.0.1:{sink.port}"
        provider = connect(url)

        assert isinstance(deliver(provider), Delivered)
        [got] = sink.received
        assert (got.login, got.rcpt_tos) == (USER, ("ann@example.com",))


def test_an_international_address_goes_out_with_smtputf8(sink: SmtpSink, connect: Connect) -> None:
    provider = connect(f"smtp://{sink.host}:{sink.port}")

    assert isinstance(deliver(provider, to="jörg@beispiel.example"), Delivered)
    assert sink.received[0].rcpt_tos == ("jörg@beispiel.example",)


def test_an_international_address_fails_for_good_where_smtputf8_is_not_offered(
    connect: Connect,
) -> None:
    with SmtpSink(smtputf8=False) as sink:
        provider = connect(f"smtp://{sink.host}:{sink.port}")

        outcome = deliver(provider, to="jörg@beispiel.example")

        assert isinstance(outcome, Failed) and not outcome.bounce
        assert "SMTPUTF8" in outcome.reason
        assert sink.received == []
        # The connection stays good for the next, ASCII, address.
        assert isinstance(deliver(provider, 2), Delivered)


def test_a_starttls_route_refuses_a_server_that_does_not_offer_it(
    sink: SmtpSink, connect: Connect
) -> None:
    provider = connect(f"smtp+starttls://{sink.host}:{sink.port}")

    outcome = deliver(provider)

    assert isinstance(outcome, Retry)
    assert "does not offer STARTTLS" in outcome.reason
    assert sink.received == []


def test_a_wrong_password_is_retried_and_says_authentication(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], connect: Connect
) -> None:
    with SmtpSink(tls_context=tls[0], require_starttls=True, auth=(USER, PASSWORD)) as sink:
        provider = connect(f"smtp+starttls://{quote(USER, safe='')}:wrong@localhost:{sink.port}")

        outcome = deliver(provider)

        # The shop's configuration, not the shopper's address: retried, and visible as such.
        assert isinstance(outcome, Retry)
        assert "authentication" in outcome.reason
        assert "535" in outcome.reason
        assert "wrong" not in outcome.reason
        assert sink.received == []


def test_a_route_without_credentials_to_a_relay_that_wants_them_is_a_retry(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], connect: Connect
) -> None:
    with SmtpSink(tls_context=tls[0], implicit_tls=True, auth=(USER, PASSWORD)) as sink:
        provider = connect(f"smtps://localhost:{sink.port}")

        outcome = deliver(provider)

        assert isinstance(outcome, Retry)
        assert "requires authentication" in outcome.reason
        assert sink.received == []


def test_a_certificate_the_client_does_not_trust_is_a_retry(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], connect: Connect
) -> None:
    with SmtpSink(tls_context=tls[0], implicit_tls=True) as sink:
        provider = connect(f"smtps://localhost:{sink.port}", trust=False)

        outcome = deliver(provider)

        assert isinstance(outcome, Retry)
        assert "TLS" in outcome.reason
        assert "certificate verify failed" in outcome.reason


def test_a_server_that_is_down_is_a_retry(connect: Connect) -> None:
    provider = connect(f"smtp://127.0.0.1:{free_port()}")

    outcome = deliver(provider)

    assert isinstance(outcome, Retry)
    assert "could not connect" in outcome.reason


# --- the server's answers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "reply"),
    [
        ("mail", "451 4.3.2 System not accepting network messages"),
        ("rcpt", "451 4.7.1 Greylisted, please try again later"),
        ("data", "452 4.3.1 Insufficient system storage"),
        ("end", "452 4.3.1 Insufficient system storage"),
    ],
)
def test_a_temporary_refusal_is_a_retry_and_the_connection_stays_usable(
    sink: SmtpSink, connect: Connect, stage: Stage, reply: str
) -> None:
    provider = connect(f"smtp://{sink.host}:{sink.port}")
    sink.fail_next(stage, reply)

    outcome = deliver(provider, 1)

    assert isinstance(outcome, Retry)
    assert reply in outcome.reason
    assert sink.received == []
    # The session was reset: the next email goes through on the same connection.
    assert isinstance(deliver(provider, 2), Delivered)
    assert [r.data for r in sink.received] == [on_the_wire(reminder(2))]
    assert sink.connections == 1


@pytest.mark.parametrize(
    ("stage", "reply", "bounce"),
    [
        ("mail", "553 5.7.1 Sender address rejected: not owned by user", False),
        ("rcpt", "550 5.1.1 The email account that you tried to reach does not exist", True),
        ("rcpt", "550 5.2.1 The email account that you tried to reach is disabled", True),
        ("rcpt", "550 Requested action not taken: mailbox unavailable", True),
        ("rcpt", "550 5.7.1 Service unavailable; client host blocked", False),
        ("rcpt", "552 5.2.2 Mailbox full", False),
        ("data", "554 5.5.1 No valid recipients", False),
        ("end", "554 5.7.1 Message rejected as spam", False),
    ],
)
def test_a_permanent_refusal_fails_with_the_servers_words(
    sink: SmtpSink, connect: Connect, stage: Stage, reply: str, bounce: bool
) -> None:
    provider = connect(f"smtp://{sink.host}:{sink.port}")
    sink.fail_next(stage, reply)

    outcome = deliver(provider, 1)

    assert isinstance(outcome, Failed)
    assert reply in outcome.reason
    # Only a refusal of the recipient that says the address is bad or gone is a bounce.
    assert outcome.bounce is bounce
    assert isinstance(deliver(provider, 2), Delivered)
    assert len(sink.received) == 1
    assert sink.connections == 1


def test_a_connection_lost_after_the_body_is_ambiguous_and_not_resent(
    sink: SmtpSink, connect: Connect
) -> None:
    provider = connect(f"smtp://{sink.host}:{sink.port}")
    sink.drop_next("end")

    outcome = deliver(provider, 1)

    assert isinstance(outcome, Ambiguous)
    assert "may have been delivered" in outcome.reason
    # The server did get it: a blind resend would have been a duplicate reminder.
    assert len(sink.received) == 1
    assert isinstance(deliver(provider, 2), Delivered)
    assert [r.data for r in sink.received] == [on_the_wire(reminder(1)), on_the_wire(reminder(2))]
    assert sink.connections == 2  # the broken connection was replaced, not reused


def test_no_answer_after_the_body_is_ambiguous(sink: SmtpSink, connect: Connect) -> None:
    provider = connect(f"smtp://{sink.host}:{sink.port}", timeout_s=0.5)
    sink.stall_next("end")

    outcome = deliver(provider)

    assert isinstance(outcome, Ambiguous)
    assert "timed out" in outcome.reason


@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_a_connection_lost_before_the_body_is_a_retry(
    sink: SmtpSink, connect: Connect, stage: Stage
) -> None:
    provider = connect(f"smtp://{sink.host}:{sink.port}")
    sink.drop_next(stage)

    outcome = deliver(provider)

    assert isinstance(outcome, Retry)
    assert "before the email was sent" in outcome.reason
    assert sink.received == []


# --- one connection, kept open ------------------------------------------------------------


def test_many_emails_travel_over_one_connection(sink: SmtpSink, connect: Connect) -> None:
    provider = connect(f"smtp://{sink.host}:{sink.port}")

    outcomes = [deliver(provider, n, f"shopper{n}@example.com") for n in range(200)]

    assert all(isinstance(o, Delivered) for o in outcomes)
    received = sink.wait_for(200)
    assert [r.rcpt_tos for r in received] == [(f"shopper{n}@example.com",) for n in range(200)]
    assert sink.connections == 1


@pytest.mark.parametrize("farewell", [None, "421 4.4.2 mugs-relay Error: timeout exceeded"])
def test_a_connection_the_server_closed_is_reopened_without_a_word(
    sink: SmtpSink, connect: Connect, farewell: str | None
) -> None:
    provider = connect(f"smtp://{sink.host}:{sink.port}")
    assert isinstance(deliver(provider, 1), Delivered)
    sink.disconnect_all(farewell)  # as a relay does with idle clients

    assert isinstance(deliver(provider, 2), Delivered)
    assert len(sink.received) == 2
    assert sink.connections == 2


def test_reopening_is_tried_once_then_reported(sink: SmtpSink, connect: Connect) -> None:
    provider = connect(f"smtp://{sink.host}:{sink.port}")
    assert isinstance(deliver(provider, 1), Delivered)
    sink.drop_next("mail", times=2)  # the kept connection, then the fresh one

    outcome = deliver(provider, 2)

    assert isinstance(outcome, Retry)
    assert sink.connections == 2
    assert isinstance(deliver(provider, 3), Delivered)


def test_close_says_goodbye_and_never_raises(sink: SmtpSink, connect: Connect) -> None:
    provider = connect(f"smtp://{sink.host}:{sink.port}")
    assert isinstance(deliver(provider), Delivered)
    sink.stop()  # the server is gone before the worker shuts down

    provider.close()
    provider.close()


# --- the file outbox ---------------------------------------------------------------------


def test_the_file_provider_writes_one_readable_eml_per_send(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox" / "mugs"  # created on first use
    message = reminder(42)

    outcome = FileProvider(outbox).deliver(
        message, sender=SENDER, recipient="ann@example.com", key="42"
    )

    assert outcome == Delivered(str(outbox / "42.eml"))
    assert sorted(p.name for p in outbox.iterdir()) == ["42.eml"]  # no temporary left
    parsed = email.message_from_bytes((outbox / "42.eml").read_bytes(), policy=default)
    assert parsed["Subject"] == "You left 42 mug behind"
    assert parsed["To"] == "ann@example.com"


def test_writing_the_same_key_again_replaces_the_email(tmp_path: Path) -> None:
    provider = FileProvider(tmp_path)
    first, second = reminder(1), reminder(2)

    provider.deliver(first, sender=SENDER, recipient="ann@example.com", key="9")
    provider.deliver(second, sender=SENDER, recipient="ann@example.com", key="9")

    assert FileProvider.resend_safe
    assert [p.name for p in tmp_path.iterdir()] == ["9.eml"]
    assert (tmp_path / "9.eml").read_bytes() == second.as_bytes()


def test_a_reader_never_sees_half_an_email(tmp_path: Path) -> None:
    provider = FileProvider(tmp_path)
    big = [reminder(n) for n in (1, 2)]
    for message in big:
        message.add_attachment(b"x" * 300_000, maintype="application", subtype="octet-stream")
    whole = {m.as_bytes() for m in big}
    provider.deliver(big[0], sender=SENDER, recipient="ann@example.com", key="5")
    seen: list[bytes] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.append((tmp_path / "5.eml").read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for n in range(30):
            provider.deliver(big[n % 2], sender=SENDER, recipient="ann@example.com", key="5")
    finally:
        done.set()
        reader.join()

    assert seen
    assert all(content in whole for content in seen)


def test_an_outbox_that_cannot_be_written_is_a_retry(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "outbox"
    not_a_folder.write_text("a file where the folder should be")

    outcome = deliver(FileProvider(not_a_folder))

    assert isinstance(outcome, Retry)
    assert "could not write" in outcome.reason


def test_a_key_that_is_not_a_file_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot name a file"):
        FileProvider(tmp_path).deliver(
            reminder(), sender=SENDER, recipient="ann@example.com", key="../escape"
        )
    assert list(tmp_path.iterdir()) == []


# --- mail URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "route"),
    [
        (None, MailRoute(kind="file")),
        ("file", MailRoute(kind="file")),
        ("smtp://relay.example.com", MailRoute("smtp", "relay.example.com", 25, "none")),
        ("smtp://relay.example.com:2525/", MailRoute("smtp", "relay.example.com", 2525, "none")),
        (
            "smtp+starttls://smtp.example.com",
            MailRoute("smtp", "smtp.example.com", 587, "starttls"),
        ),
        ("smtps://smtp.example.com", MailRoute("smtp", "smtp.example.com", 465, "tls")),
        (
            "smtp+starttls://mugs%40shop:p%3Ass%2Fw%40rd%20%25@smtp.example.com:2587",
            MailRoute("smtp", "smtp.example.com", 2587, "starttls", "mugs@shop", "p:ss/w@rd %"),
        ),
        (
            "smtps://u:p@smtp.example.com",
            MailRoute("smtp", "smtp.example.com", 465, "tls", "u", "p"),
        ),
        # A password in clear is fine to a relay on this very machine.
        ("smtp://u:p@localhost:1025", MailRoute("smtp", "localhost", 1025, "none", "u", "p")),
        ("smtp://u:p@127.0.0.1", MailRoute("smtp", "127.0.0.1", 25, "none", "u", "p")),
        ("smtp://u:p@[::1]:2525", MailRoute("smtp", "::1", 2525, "none", "u", "p")),
    ],
)
def test_accepted_mail_urls(url: str | None, route: MailRoute) -> None:
    parsed = parse_mail_url(url)
    assert parsed == route
    assert parsed.password == route.password  # compare=True, repr=False


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "not a mail route"),
        ("relay.example.com:25", "not a mail route"),
        ("http://relay.example.com", "unknown mail route scheme 'http'"),
        ("smtp+ssl://relay.example.com", "unknown mail route scheme 'smtp+ssl'"),
        ("smtp://", "has no host"),
        ("smtp://:25", "has no host"),
        ("smtp://relay.example.com:0", "port must be a number from 1 to 65535"),
        ("smtp://relay.example.com:99999", "port must be a number from 1 to 65535"),
        ("smtp://relay.example.com:smtp", "port must be a number from 1 to 65535"),
        ("smtp://relay.example.com/mail", "no path, query or fragment"),
        ("smtps://u:pa?ss@relay.example.com", "no path, query or fragment"),
        ("smtp+starttls://mugs@relay.example.com", "need both a user and a password"),
        ("smtp+starttls://:secret@relay.example.com", "need both a user and a password"),
        (
            "smtp://u:secret@relay.example.com",
            "refusing to send the SMTP password in clear text to relay.example.com",
        ),
    ],
)
def test_refused_mail_urls(url: str, message: str) -> None:
    with pytest.raises(MailRouteError) as refused:
        parse_mail_url(url)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)
    assert "secret" not in str(refused.value)
    assert "pa?ss" not in str(refused.value)


def test_redacted_shows_the_route_without_the_password() -> None:
    route = parse_mail_url("smtp+starttls://mugs%40shop:hunter2@smtp.example.com")

    assert route.redacted() == "smtp+starttls://mugs%40shop:***@smtp.example.com:587"
    assert "hunter2" not in repr(route)
    assert parse_mail_url("smtp://[::1]").redacted() == "smtp://[::1]:25"
    assert parse_mail_url(None).redacted() == "file"


@given(
    user=st.text(min_size=1, max_size=20),
    password=st.text(min_size=1, max_size=40),
)
def test_any_password_round_trips_and_is_never_shown(user: str, password: str) -> None:
    url = f"smtps://{quote(user, safe='')}:{quote(password, safe='')}@smtp.example.com"

    route = parse_mail_url(url)

    assert (route.username, route.password) == (user, password)
    assert route.redacted() == f"smtps://{quote(user, safe='')}:***@smtp.example.com:465"
