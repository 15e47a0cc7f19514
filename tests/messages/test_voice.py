"""The voice document: a friendly default, every bad document refused with each problem
named where it is, and the variant a reminder takes."""

from __future__ import annotations

import re

import pytest

from cartnudge.messages.voice import (
    DEFAULT_DOCUMENT,
    MAX_DOCUMENT_BYTES,
    VoiceError,
    choose_variant,
    default_voice,
    parse_voice,
)

FIRST_SUBJECT = 'subject: "You left something in your cart at {{ shop_name }}"'
LAST_SUBJECT = 'subject: "Your cart at {{ shop_name }} is still waiting"'


def with_first_subject(template: str) -> str:
    return DEFAULT_DOCUMENT.replace(FIRST_SUBJECT, f"subject: {template}")


def render(variant: str, *, item_count: int = 2, step: int = 1) -> dict[str, str]:
    wording = default_voice().render(
        variant,
        shop_name="Tea House",
        first_name="Ana",
        item_count=item_count,
        total="$48.00",
        step=step,
    )
    return {
        "subject": wording.subject,
        "lead": wording.lead,
        "button": wording.button,
        "closing": wording.closing,
    }


def test_the_default_reads_as_a_friendly_plain_reminder_in_every_variant() -> None:
    first = render("first")
    last = render("last", step=2)
    saved = render("saved", item_count=1)

    assert first["subject"] == "You left something in your cart at Tea House"
    assert first["button"] == "Return to your cart"
    assert last["subject"] == "Your cart at Tea House is still waiting"
    assert "final reminder" in last["lead"]
    assert saved["subject"] == "Still saving this for later?"
    assert "You saved a cart at Tea House" in saved["lead"]
    everything = " ".join(" ".join(v.values()) for v in (first, last, saved)).lower()
    # No fake urgency and no discounts: the product's promise to shoppers.
    for pushy in ("hurry", "only a few", "expire", "discount", "% off", "last chance", "sold out"):
        assert pushy not in everything


def test_a_piece_never_prints_none_for_an_unknown_name() -> None:
    voice = parse_voice(with_first_subject('"{{ first_name }} {{ greeting }}: {{ total }}"'))

    wording = voice.render("first", shop_name="S", first_name=None, item_count=1, total="", step=1)

    assert wording.subject == "Hi there:"


def test_a_piece_that_fails_on_particular_values_falls_back_to_the_default_wording() -> None:
    # The trial render uses 3 and 1 items; 2 divides by zero only at send time.
    voice = parse_voice(with_first_subject('"{{ 10 // (item_count - 2) }} things"'))

    def subject(count: int) -> str:
        return voice.render(
            "first", shop_name="S", first_name="Ana", item_count=count, total="", step=1
        ).subject

    assert subject(3) == "10 things"
    assert subject(2) == "You left something in your cart at S"


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (
            DEFAULT_DOCUMENT.replace(LAST_SUBJECT, 'subject: "{{ frist_name }}, hello"'),
            "last.subject: unknown variable 'frist_name'",
        ),
        (with_first_subject('"{{ shop_name "'), "first.subject: template error on line 1:"),
        (with_first_subject('"{% if first_name %}Hi"'), "first.subject: template error"),
        (with_first_subject('"{{ first_name }}"'), "first.subject: the subject renders empty"),
        (with_first_subject('"{{ shop_name * 10 }}"'), "more than 200"),
        (with_first_subject('"{{ shop_name.__class__ }}"'), "first.subject: cannot be rendered"),
        (with_first_subject('"{{ item_count / 0 }}"'), "cannot be rendered: division by zero"),
        (
            DEFAULT_DOCUMENT.replace('button: "See your cart"', "button: yes"),
            "last.button: should be text, not True",
        ),
        (
            DEFAULT_DOCUMENT.replace('button: "See your cart"', 'button: ""'),
            "last.button: the button label renders empty",
        ),
        (
            DEFAULT_DOCUMENT.replace('button: "See your cart"', 'buton: "See your cart"'),
            "last.buton: not a piece (the pieces are subject, lead, button, closing)",
        ),
        (DEFAULT_DOCUMENT + "footer: {}\n", "footer: not a variant"),
        (DEFAULT_DOCUMENT.replace("\nsaved:", "\nkept:"), "saved: missing"),
        ("first: [\n", "not valid YAML: "),
        ("- a list\n", "a voice document is a mapping of variants"),
        ("first: x" + " " * MAX_DOCUMENT_BYTES, "at most 64 KiB"),
    ],
)
def test_a_bad_document_is_refused_naming_the_problem_and_where(
    document: str, problem: str
) -> None:
    with pytest.raises(VoiceError) as refused:
        parse_voice(document)

    message = str(refused.value)
    assert problem in message
    assert "\n" not in message  # the CLI prints a refusal on one line


def test_every_problem_of_a_document_is_named_at_once() -> None:
    document = (
        DEFAULT_DOCUMENT.replace(LAST_SUBJECT, 'subject: "{{ frist_name }}"')
        .replace('button: "Open your saved cart"', 'button: "{{ basket }}"')
        .replace('button: "Return to your cart"', "button: 12")
    )

    with pytest.raises(VoiceError) as refused:
        parse_voice(document)

    problems = str(refused.value).split("; ")
    assert [p.split(":")[0] for p in problems] == ["first.button", "last.subject", "saved.button"]
    assert problems[2] == "saved.button: unknown variable 'basket'"


def test_yaml_errors_say_where_on_one_line() -> None:
    with pytest.raises(VoiceError, match=re.escape("(line 2, column 13)")):
        parse_voice("first:\n  subject: a: b\n")


@pytest.mark.parametrize(
    ("step", "last_step", "saved_link", "variant"),
    [
        (1, False, False, "first"),
        (1, True, False, "first"),  # a 1-step shop's only reminder is a first nudge
        (2, False, False, "first"),  # the middle one of three
        (2, True, False, "last"),
        (3, True, False, "last"),
        (1, False, True, "saved"),
        (2, True, True, "saved"),  # a saved cart keeps its own wording at every step
    ],
)
def test_the_variant_of_a_reminder(
    step: int, last_step: bool, saved_link: bool, variant: str
) -> None:
    assert choose_variant(step, last_step=last_step, saved_link=saved_link) == variant
