"""The rules and the voice as forms: a field per setting (or per piece of wording), named by
the setting's path in the document (``tiers.1.waits``, ``first.subject``) so each problem
the document's validation names is shown beside its field.

A form becomes a YAML document that is validated as a whole, exactly as ``rules set`` and
``voice set`` validate a file; a saved form is stored in the same plain form the CLI
shows, so the browser and the command line edit one history.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from cartnudge.messages.voice import PIECES, VARIANTS, VoiceError, parse_voice
from cartnudge.timing.rules import ConsentPolicy, Rules, RulesError, parse_rules
from cartnudge.yamldocs import WHOLE

MAX_TIERS = 10
RULES_HEADER = (
    "# Reminder rules, saved from the dashboard. Waits take units: 90s, 30m, 4h, 2d.\n"
    "# Money is in the shop's currency. `cartnudge rules show --version 0` prints the\n"
    "# built-in default with a note on every setting.\n"
)
VOICE_HEADER = (
    "# How the reminders read, saved from the dashboard. `cartnudge voice show --version 0`\n"
    "# prints the built-in default with a note on every piece and value.\n"
)
CONSENT_CHOICES = tuple(policy.value for policy in ConsentPolicy)


@dataclass
class Filled:
    """A form as the owner filled it: its values by field, the problems by field, and,
    when valid, the parsed document and its text."""

    values: dict[str, str]
    problems: dict[str, list[str]] = field(default_factory=dict)
    text: str | None = None
    value: Any = None

    @property
    def valid(self) -> bool:
        return not self.problems

    def elsewhere(self, names: set[str]) -> list[tuple[str, str]]:
        """Problems with no field of their own on the form (shown above it)."""
        return [
            (where, what)
            for where, whats in self.problems.items()
            if where not in names
            for what in whats
        ]


# -- rules -----------------------------------------------------------------------------


def rules_values(rules: Rules) -> dict[str, str]:
    """The form's values for ``rules``, with one empty tier row to add a tier."""
    doc = rules.to_document()
    values = {
        "steps": str(doc["steps"]),
        "give_up_after": doc["give_up_after"],
        "do_not_disturb": doc["do_not_disturb"],
        "minimum_cart_value": str(doc["minimum_cart_value"]),
        "wait_override": ", ".join(doc["wait_override"] or ()),
        "consent": doc["consent"],
        "quiet_hours.start": (doc["quiet_hours"] or {}).get("start", ""),
        "quiet_hours.end": (doc["quiet_hours"] or {}).get("end", ""),
    }
    for n, tier in enumerate(doc["tiers"]):
        values[f"tiers.{n}.name"] = tier["name"]
        values[f"tiers.{n}.from"] = str(tier["from"])
        values[f"tiers.{n}.waits"] = ", ".join(tier["waits"])
    return values


def tier_rows(values: Mapping[str, str]) -> int:
    """How many tier rows the form shows: those filled, and one empty to add a tier."""
    filled = [n for n in range(MAX_TIERS) if any(values.get(f"tiers.{n}.{k}") for k in _TIER)]
    return min(max(filled, default=-1) + 2, MAX_TIERS)


_TIER = ("name", "from", "waits")


def rules_field_names(values: Mapping[str, str]) -> set[str]:
    names = {
        "steps",
        "give_up_after",
        "do_not_disturb",
        "minimum_cart_value",
        "wait_override",
        "consent",
        "quiet_hours.start",
        "quiet_hours.end",
    }
    names |= {f"tiers.{n}.{k}" for n in range(tier_rows(values)) for k in _TIER}
    return names


def fill_rules(form: Mapping[str, str]) -> Filled:
    """Validate a filled rules form as a whole document."""
    values = {name: form.get(name, "").strip() for name in rules_field_names(form)}
    filled = Filled(values)
    tiers, rows = [], []  # rows: the form row of each tier (empty rows are skipped)
    for n in range(MAX_TIERS):
        row = {k: values.get(f"tiers.{n}.{k}", "") for k in _TIER}
        if any(row.values()):
            rows.append(n)
            tiers.append(
                {"name": row["name"], "from": _number(row["from"]), "waits": _list(row["waits"])}
            )
    start, end = values["quiet_hours.start"], values["quiet_hours.end"]
    if bool(start) != bool(end):
        missing = "quiet_hours.end" if start else "quiet_hours.start"
        filled.problems[missing] = ["give both times, or neither to switch quiet hours off"]
    document = {
        "tiers": tiers,
        "steps": _number(values["steps"]),
        "give_up_after": values["give_up_after"],
        "quiet_hours": {"start": start, "end": end} if start and end else None,
        "do_not_disturb": values["do_not_disturb"],
        "minimum_cart_value": _number(values["minimum_cart_value"]),
        "wait_override": _list(values["wait_override"]) or None,
        "consent": values["consent"],
    }
    filled = _validated(
        filled, document, RULES_HEADER, parse_rules, RulesError, lambda r: r.to_document()
    )
    names = rules_field_names(values)
    problems: dict[str, list[str]] = {}
    for where, whats in filled.problems.items():
        problems.setdefault(_field_of(_row_of(where, rows), names), []).extend(whats)
    filled.problems = problems
    return filled


def _field_of(where: str, names: set[str]) -> str:
    """The field a problem belongs to: ``tiers.1.waits.1`` (the second wait) is the
    ``tiers.1.waits`` field's."""
    parts = where.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in names:
            return ".".join(parts[:end])
    return where


def _row_of(where: str, rows: list[int]) -> str:
    """A problem's place in the document (``tiers.1.waits``) as its place on the form."""
    parts = where.split(".")
    if parts[0] == "tiers" and len(parts) > 1 and parts[1].isdigit() and int(parts[1]) < len(rows):
        parts[1] = str(rows[int(parts[1])])
    return ".".join(parts)


def _number(text: str) -> Any:
    """A number typed in a field, as YAML would read it; anything else stays text and the
    document's validation names it."""
    try:
        return int(text)
    except ValueError:
        return text


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]


# -- voice -----------------------------------------------------------------------------


def voice_values(body: str) -> dict[str, str]:
    """The form's values: each variant's pieces as written in the stored document."""
    data = yaml.safe_load(body) or {}
    return {
        f"{variant}.{piece}": str((data.get(variant) or {}).get(piece, ""))
        for variant in VARIANTS
        for piece in PIECES
    }


VOICE_FIELDS = {f"{variant}.{piece}" for variant in VARIANTS for piece in PIECES}


def fill_voice(form: Mapping[str, str]) -> Filled:
    """Validate a filled voice form as a whole document."""
    # Browsers send a textarea's line ends as CRLF.
    values = {name: form.get(name, "").replace("\r\n", "\n").strip() for name in VOICE_FIELDS}
    document = {
        variant: {piece: values[f"{variant}.{piece}"] for piece in PIECES} for variant in VARIANTS
    }
    return _validated(Filled(values), document, VOICE_HEADER, parse_voice, VoiceError, None)


# -- both ------------------------------------------------------------------------------


def _validated(
    filled: Filled,
    document: dict[str, Any],
    header: str,
    parse: Callable[[str], Any],
    error: type[RulesError] | type[VoiceError],
    normal: Callable[[Any], dict[str, Any]] | None,
) -> Filled:
    text = header + _dump(document)
    try:
        value = parse(text)
    except error as exc:
        for where, what in exc.problems:
            filled.problems.setdefault(where or WHOLE, []).append(what)
        return filled
    if filled.problems:  # the form's own checks (a half-filled pair of fields)
        return filled
    if normal is not None:  # stored as the CLI shows it: "40", not "'40'"
        text = header + _dump(normal(value))
    filled.text, filled.value = text, value
    return filled


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # Wording over several lines is kept as written, as a block.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def _dump(document: dict[str, Any]) -> str:
    # Short lists on one line ([4h, 1d]); the wording, whose pieces are long, in blocks.
    flow = None if "tiers" in document else False
    return yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=flow,
        width=88,
    )
