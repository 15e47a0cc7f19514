"""The jobs beside the loops: each on its own schedule, and one that fails neither stops
the others nor the reminders."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from cartnudge import worker
from cartnudge.config import Settings
from cartnudge.worker import Every, Loops
from tests.conftest import KEY, T0


def test_a_job_is_due_at_once_then_every_interval() -> None:
    every = Every(60.0)
    assert every.due(1000.0)
    assert not every.due(1059.9)
    assert every.due(1060.0)
    assert not every.due(1061.0)


def test_a_failing_job_is_logged_by_name_and_the_others_still_run(
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[str] = []

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("the tally's database went away")

    monkeypatch.setattr(worker, "tally_shops", broken)
    monkeypatch.setattr(worker, "run_privacy", lambda *_: ran.append("privacy"))
    monkeypatch.setattr(worker, "run_nightly", lambda *_: ran.append("nightly"))
    settings = Settings(home=tmp_path, public_url="http://testserver", secret_key=KEY)
    loops = Loops(engine, settings, clock=lambda: T0, monotonic=lambda: 1000.0)
    try:
        loops.run_jobs_if_due()
    finally:
        loops.providers.close()

    assert ran == ["privacy", "nightly"]
    assert "tally of closed days failed; tried again at its next time" in caplog.text
    assert "the tally's database went away" in caplog.text
