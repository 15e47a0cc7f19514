"""Reading a document an owner wrote in YAML (a shop's rules, its voice), and naming
each of its problems where it is, so a form can show it beside its field."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

WHOLE = "document"  # where a problem of the document as a whole is


class DocumentError(ValueError):
    """A document that cannot be used. ``problems`` holds each as (where, what): where is
    a dotted path to the setting (``tiers.1.waits``) or ``document``; the message is all
    of them on one line (the CLI prints every refusal on one line)."""

    def __init__(self, problems: str | Sequence[tuple[str, str]]) -> None:
        self.problems = ((WHOLE, problems),) if isinstance(problems, str) else tuple(problems)
        super().__init__("; ".join(_line(where, what) for where, what in self.problems))


def _line(where: str, what: str) -> str:
    return what if where == WHOLE else f"{where}: {what}"


class Problems(ValueError):
    """Raised by a model's own check with problems at paths of their own (the model's
    check has no path of its own, so the paths are carried along)."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(what for _, what in self.problems))


def problems_of(
    exc: ValidationError, explain: Callable[[ErrorDetails], str]
) -> list[tuple[str, str]]:
    """Each of a validation's errors as (where, what), ``explain`` wording each."""
    out: list[tuple[str, str]] = []
    for error in exc.errors():
        carried = error.get("ctx", {}).get("error")
        if isinstance(carried, Problems):
            out.extend(carried.problems)
            continue
        where = ".".join(str(part) for part in error["loc"]) or WHOLE
        out.append((where, " ".join(explain(error).split())))
    return out


def yaml_mapping(
    text: str, *, what: str, of: str, limit: int, error: type[ValueError]
) -> dict[Any, Any]:
    """A document's YAML as a mapping, or ``error`` with a one-line reason (the CLI prints
    every refusal on one line): too big, not YAML (and where the parser gave up), or not a
    mapping."""
    if len(text.encode()) > limit:
        raise error(f"a {what} document is at most {limit // 1024} KiB")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
            mark = exc.problem_mark
            problem = f"{exc.problem} (line {mark.line + 1}, column {mark.column + 1})"
        else:
            problem = " ".join(str(exc).split())
        raise error(f"not valid YAML: {problem}") from exc
    if not isinstance(data, dict):
        raise error(f"a {what} document is a mapping of {of} (see `{what} show`)")
    return data
