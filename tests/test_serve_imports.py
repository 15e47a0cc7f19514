"""What ``cartnudge serve`` imports before it forks is held by all three of its processes
(bench/README.md, *Memory*): none of what it never runs there may come with it."""

from __future__ import annotations

import json
import subprocess
import sys

# What serve imports before it forks (cartnudge.cli._run_web_processes and preload).
SERVE = (
    "cartnudge.cli",
    "cartnudge.app",
    "cartnudge.worker",
    "cartnudge.intake.remote",
    "cartnudge.intake.writer",
    "cartnudge.intake.writer_process",
    "uvicorn",
)
NEVER = (
    "sqlalchemy.orm",  # every statement is Core (≈ 10 MiB)
    "alembic",  # migrations run in a short-lived child
    "httpx",  # its package loads its command line: rich and pygments
    "rich",
    "pygments",
    "argon2",  # loaded at the first sign-in
    "playwright",
    "scipy",  # measurement's intervals, for reports
    "numpy",
    "openpyxl",  # loaded when a sheet is written as xlsx
    "googleapiclient",  # the owner's sheet, written by a nightly job, not by serve
    "google.auth",
    "google_auth_httplib2",
    "httplib2",
)


def test_serve_loads_nothing_it_does_not_run_before_it_forks() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {SERVE!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = json.loads(done.stdout)
    found = sorted(
        name for name in loaded if any(name == n or name.startswith(n + ".") for n in NEVER)
    )
    assert found == []
