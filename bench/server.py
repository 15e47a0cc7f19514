"""The real server, ``cartnudge serve``, in a process of its own on a fresh database."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import text

from cartnudge.db.engine import make_engine
from cartnudge.testing.postgres import free_port
from cartnudge.testing.serve import wait_healthy

HOST = "127.0.0.1"  # the benchmark never sends traffic anywhere else
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
CLI = str(Path(sys.executable).with_name("cartnudge"))
# Every cart reminded: the benchmarks count reminders, and a holdout would move the count.
SHOP_OPTIONS = (
    "--name", "Bench", "--timezone", "Europe/London", "--currency", "GBP", "--holdout", "0",
)  # fmt: skip


class ServerProcess:
    """``cartnudge serve`` with ``CARTNUDGE_HOME`` in a new temporary folder (so SQLite starts
    empty) or ``CARTNUDGE_DATABASE_URL`` pointing at a fresh PostgreSQL database."""

    def __init__(
        self, database_url: str | None = None, *, batch_max: int = 256, workers: int = 1
    ) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="cartnudge-bench-"))
        self.database_url = database_url or f"sqlite:///{self.home / 'cartnudge.db'}"
        self.port = free_port()
        self.batch_max = batch_max
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.home / "server.log"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["CARTNUDGE_HOME"] = str(self.home)
        env["CARTNUDGE_DATABASE_URL"] = self.database_url
        env["CARTNUDGE_PUBLIC_URL"] = f"http://{HOST}:{self.port}"
        env["CARTNUDGE_INGEST_BATCH_MAX"] = str(self.batch_max)
        return env

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def add_shop(self, slug: str = "bench", *options: str) -> dict[str, Any]:
        """Create the shop with ``cartnudge shop add [options]`` (migrating the database) and
        return the JSON it prints: webhook URLs and secrets."""
        shop: dict[str, Any] = json.loads(self.cli("shop", "add", slug, *SHOP_OPTIONS, *options))
        return shop

    def cli(self, *args: str, stdin: str | None = None) -> str:
        """Run ``cartnudge ARGS`` against this server's database; its standard output."""
        done = subprocess.run(
            [CLI, *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"cartnudge {' '.join(args)} failed: {done.stderr[-2000:]}")
        return done.stdout

    def start(self) -> ServerProcess:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [CLI, "serve", "--host", HOST, "--port", str(self.port)]
                + (["--workers", str(self.workers)] if self.workers > 1 else []),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait_healthy(f"http://{HOST}:{self.port}", self.process, START_TIMEOUT_S):
            return self
        if self.process.poll() is not None:
            raise RuntimeError(f"server exited at start-up:\n{self.log_tail()}")
        raise RuntimeError(f"server not healthy after {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Ctrl-C: uvicorn finishes in-flight requests, then the writer drains its queue."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def inbox_counts(self) -> dict[str, int]:
        """Rows in ``inbox_events`` by status (read after the server has stopped)."""
        engine = make_engine(self.database_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    text("SELECT status, count(*) FROM inbox_events GROUP BY status")
                ).all()
        finally:
            engine.dispose()
        return {str(status): int(count) for status, count in rows}

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
