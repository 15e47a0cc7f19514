"""What serve hands down to the children it forks is taken only by those children: any
other process (serve itself, a grandchild, a child started by exec) builds its own."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from cartnudge import children
from cartnudge.children import hand_down, handed_down


class Thing:
    pass


@pytest.fixture(autouse=True)
def nothing_handed_down() -> Iterator[None]:
    yield
    children._handed_down.clear()


def in_a_fork(check: object) -> bytes:
    """Run ``check`` (returning bytes) in a forked child of this process; its answer."""
    assert callable(check)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write, check())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as answer:
        return answer.read()


def test_a_forked_child_takes_what_was_handed_down() -> None:
    given = Thing()
    hand_down(thing=given)
    assert in_a_fork(
        lambda: b"given" if handed_down("thing", Thing, Thing) is given else b"own"
    ) == (b"given")


def test_the_process_that_handed_it_down_builds_its_own() -> None:
    given = Thing()
    hand_down(thing=given)
    assert handed_down("thing", Thing, Thing) is not given


def test_a_grandchild_builds_its_own() -> None:
    given = Thing()
    hand_down(thing=given)

    def grandchild() -> bytes:
        return in_a_fork(
            lambda: b"given" if handed_down("thing", Thing, Thing) is given else b"own"
        )

    assert in_a_fork(grandchild) == b"own"


def test_nothing_or_the_wrong_kind_handed_down_means_its_own() -> None:
    hand_down(thing="not a Thing")

    def kinds() -> bytes:
        return b" ".join(
            type(handed_down(name, Thing, Thing)).__name__.encode() for name in ("thing", "other")
        )

    assert in_a_fork(kinds) == b"Thing Thing"
