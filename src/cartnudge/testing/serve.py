"""Waiting for a ``cartnudge serve`` started as a child process (tests and benchmarks)."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from typing import Any


def wait_healthy(base_url: str, process: subprocess.Popen[Any], timeout_s: float) -> bool:
    """True once ``/healthz`` answers 200; False if the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as answer:  # noqa: S310 - our own local server
                if answer.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False
