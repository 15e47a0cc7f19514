"""Start a throw-away PostgreSQL server from the machine's binaries.

Used by the test suite and the benchmarks, so neither needs a server set up by hand.
PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from cartnudge.testing.started import Started

START_TIMEOUT_S = 60


def find_bindir() -> Path:
    """Locate the PostgreSQL server binaries (``$PG_BINDIR`` wins)."""
    explicit = os.environ.get("PG_BINDIR")
    candidates = [explicit] if explicit else []
    candidates += sorted((str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")), reverse=True)
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        candidates.append(str(Path(pg_ctl).parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise RuntimeError("PostgreSQL server binaries not found; set PG_BINDIR")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer(Started):
    """A private cluster in a temporary folder, listening on 127.0.0.1:<port>."""

    def __init__(self, *, durable: bool = False, port: int | None = None) -> None:
        self.bindir = find_bindir()
        self.port = port or free_port()
        self.durable = durable  # fsync off is fine for tests, not for benchmarks
        self.root = Path(tempfile.mkdtemp(prefix="cartnudge-pg-"))
        self.datadir = self.root / "data"
        self._as_user: list[str] = []
        self._options: list[str] = []
        if os.geteuid() == 0:
            self._as_user = ["runuser", "-u", "postgres", "--"]
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://cartnudge@127.0.0.1:{self.port}/cartnudge"

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self._as_user, *args], check=True, capture_output=True, cwd=self.root, timeout=120
        )

    def start(self) -> PostgresServer:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            "cartnudge",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        )
        options = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-k {self.root}",
            "-c max_connections=200",
            "-c shared_buffers=128MB",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._options = options
        self.ctl("start", "-w", "-t", str(START_TIMEOUT_S), "-o", " ".join(options))
        self._run(
            str(self.bindir / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "cartnudge",
            "cartnudge",
        )
        return self

    def ctl(self, *args: str) -> None:
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.root / "server.log"),
            *args,
        )

    def pause(self) -> None:
        """Stop the server but keep its data (to test an outage)."""
        self.ctl("stop", "-m", "fast", "-w")

    def resume(self) -> None:
        self.ctl("start", "-w", "-t", str(START_TIMEOUT_S), "-o", " ".join(self._options))

    def stop(self) -> None:
        if self.datadir.exists():
            with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
                self.ctl("stop", "-m", "immediate", "-w")
        shutil.rmtree(self.root, ignore_errors=True)

    @contextlib.contextmanager
    def database(self, prefix: str) -> Iterator[str]:
        """A new, empty database on this server, as a URL; dropped on exit, connections or
        not (a test that killed its processes may leave some behind)."""
        from sqlalchemy import text

        from cartnudge.db.engine import make_engine

        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        admin = make_engine(self.url, pool_size=1)

        def run(sql: str) -> None:
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text(sql))

        try:
            run(f"CREATE DATABASE {name}")
            try:
                yield self.url.rsplit("/", 1)[0] + "/" + name
            finally:
                run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            admin.dispose()
