"""Reading a document an owner wrote in YAML (a shop's rules, its voice)."""

from __future__ import annotations

from typing import Any

import yaml


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
