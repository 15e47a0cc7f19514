"""The package graph reads in the order of the flow: a stage imports the shared words and the
stages before it, never one after it, and no modules import each other in a circle.

The graph is read from the source with ``ast``, imports inside functions included, so an
import moved into a function to dodge a circle at import time still counts.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import cartnudge

SRC = Path(cartnudge.__file__).parent

# Lowest first. A module may import any module of its own rank or a lower one. Each rank
# lists the names right under ``cartnudge`` (a package, or a module at the top).
ORDER: tuple[frozenset[str], ...] = tuple(
    frozenset(rank)
    for rank in (
        # The shared words and plumbing every stage may use.
        {
            "__init__",
            "events",
            "addresses",
            "money",
            "clock",
            "config",
            "keys",
            "durations",
            "yamldocs",
            "logs",
            "http",
            "children",
            "templating",
        },
        {"db"},
        # The CLI's runtime looks a shop up by its slug for every stage's commands.
        {"shops", "cli_support"},
        {"intake"},
        {"carts"},
        {"timing"},
        {"decisions"},
        {"messages"},
        {"delivery"},
        {"tracking"},
        {"measurement"},
        {"privacy"},
        # The owner's sheet reads the cart list and signs links the dashboard opens.
        {"export"},
        {"dashboard"},
        # The composition roots and tools that put the stages together.
        {"app", "worker", "cli", "sim", "testing", "migrations"},
    )
)

# Imports against the order, each with why: a later stage serving an earlier one through a
# small function. (importer, or a package of importers; the module imported.)
SERVES: dict[tuple[str, str], str] = {
    # The one hand-off of the flow: intake applies each canonical event to the cart list.
    ("cartnudge.intake.service", "cartnudge.carts.service"): "apply_events",
    ("cartnudge.intake.service", "cartnudge.carts.repository"): "locks a shop's carts",
    ("cartnudge.intake.writer", "cartnudge.carts.service"): "applies the writer's batch",
    # Applying events restarts each cart's wait: timing says when, from the shop's rules.
    ("cartnudge.carts.service", "cartnudge.timing.policy"): "wake_at",
    ("cartnudge.carts.service", "cartnudge.timing.rules"): "the Rules type",
    ("cartnudge.carts.service", "cartnudge.timing.service"): "rules_of",
    # The process's counters: every stage counts into them.
    ("cartnudge.db.turnstile", "cartnudge.measurement.metrics"): "counts write turns",
    ("cartnudge.intake.endpoints", "cartnudge.measurement.metrics"): "counts deliveries",
    ("cartnudge.delivery.sender", "cartnudge.measurement.metrics"): "counts sends, their lag",
    ("cartnudge.timing.waiter", "cartnudge.measurement.metrics"): "counts the waiter's moves",
    ("cartnudge.tracking.endpoints", "cartnudge.measurement.metrics"): "counts unsubscribes",
    # The consent ledger is privacy's; a cart's event, a send and an unsubscribe record in it.
    ("cartnudge.carts.service", "cartnudge.privacy.consent"): "records an event's consent",
    ("cartnudge.carts.service", "cartnudge.privacy.ledger_repository"): "the ledger",
    ("cartnudge.delivery.sender", "cartnudge.privacy.consent"): "the consent gate",
    ("cartnudge.delivery.sender", "cartnudge.privacy.ledger_repository"): "the ledger",
    ("cartnudge.tracking.service", "cartnudge.privacy.consent"): "records an unsubscribe",
    # The outbox is delivery's: a cart the owner stops, carts found to be one, and a shop
    # whose sender is now set change queued sends through delivery's service functions.
    ("cartnudge.carts.actions", "cartnudge.delivery.service"): "cancel_cart_sends",
    ("cartnudge.carts.service", "cartnudge.delivery.service"): "hand_over_sends",
    ("cartnudge.shops.service", "cartnudge.delivery.service"): "release_held_sends",
    ("cartnudge.shops.controls", "cartnudge.delivery.service"): "release_paused_sends",
    # A shop's mail route is checked by the providers that will use it.
    ("cartnudge.shops.service", "cartnudge.delivery.providers"): "parse_mail_url",
    # A reminder carries signed links that tracking later reads back.
    ("cartnudge.delivery.sender", "cartnudge.tracking.policy"): "the links' lifetimes",
    ("cartnudge.delivery.sender", "cartnudge.tracking.tokens"): "signs the links",
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """Every ``cartnudge`` module ``name`` imports, at any depth of its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                if f"{base}.{alias.name}" in known:  # ``from pkg import module``
                    yield f"{base}.{alias.name}"
                elif base in known:
                    yield base


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: set(_imports(name, path, known)) - {name} for name, path in modules.items()}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _rank(module: str) -> int:
    top = _top(module)
    for i, rank in enumerate(ORDER):
        if top in rank:
            return i
    raise AssertionError(f"{module}: {top!r} has no place in ORDER; give it one")


def _excused(importer: str, imported: str) -> bool:
    return any(
        (importer == who or importer.startswith(who + ".")) and imported == what
        for who, what in SERVES
    )


def test_every_import_goes_down_the_flow() -> None:
    against = sorted(
        f"{importer} -> {imported}"
        for importer, targets in _graph().items()
        for imported in targets
        if _rank(imported) > _rank(importer) and not _excused(importer, imported)
    )
    assert against == [], "\n".join(against)


def test_every_listed_exception_is_still_needed() -> None:
    graph = _graph()
    stale = [
        f"{who} -> {what}"
        for who, what in SERVES
        if not any(
            (importer == who or importer.startswith(who + ".")) and what in targets
            for importer, targets in graph.items()
        )
    ]
    assert stale == []


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every group of nodes that reach each other (Tarjan's strongly connected components)."""
    circles: list[list[str]] = []
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            circle = []
            while True:
                member = stack.pop()
                circle.append(member)
                if member == node:
                    break
            if len(circle) > 1:
                circles.append(sorted(circle))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_no_modules_import_each_other_in_a_circle() -> None:
    assert _circles(_graph()) == []


def test_no_stages_import_each_other_in_a_circle_but_through_the_listed_exceptions() -> None:
    stages: dict[str, set[str]] = {}
    for importer, targets in _graph().items():
        for imported in targets:
            # A rank is one unit: the shared words among themselves, shops and the CLI runtime.
            if _rank(importer) != _rank(imported) and not _excused(importer, imported):
                stages.setdefault(_top(importer), set()).add(_top(imported))
    assert _circles(stages) == []
