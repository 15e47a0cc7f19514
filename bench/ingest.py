"""The figures of the intake benchmark.

ingest_http      saturation throughput through HTTP on SQLite, verified (2xx == rows stored)
latency_http     ack latency at a fixed offered rate on SQLite, open loop
inprocess        verify + parse + group-commit write, no HTTP, one process, SQLite
inprocess_pg     the same on a private, durable PostgreSQL
ingest_http_pg   saturation throughput through HTTP on that PostgreSQL
http_ceiling     the same requests signed with a wrong secret: answered 401 before any database
                 work, so this is what HTTP + FastAPI + verify alone cost (a diagnostic)
"""

from __future__ import annotations

import base64
import gc
import itertools
import json
import math
import secrets
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
from sqlalchemy import Engine, event, text

from bench.server import HOST, ServerProcess
from cartnudge.clock import system_clock
from cartnudge.db.engine import make_engine
from cartnudge.db.migrate import upgrade
from cartnudge.db.session import writing
from cartnudge.intake.examples import ExampleRequest, signed_storefront, storefront_event
from cartnudge.intake.lanes import parse_payload
from cartnudge.intake.service import Delivery, Outcome
from cartnudge.intake.signatures import verify_standard
from cartnudge.intake.writer import IngestWriter
from cartnudge.shops.repository import ShopRecord
from cartnudge.shops.service import add_shop
from cartnudge.testing.postgres import PostgresServer

REPO = Path(__file__).resolve().parent.parent
FIGURES = (
    "ingest_http",
    "latency_http",
    "http_ceiling",
    "inprocess",
    "inprocess_pg",
    "ingest_http_pg",
)
LOADGEN_SLACK_S = 180.0  # building requests and draining answers, on top of the timed part
INPROCESS_MAX_RATE = 6000  # events/s: requests pre-built for the in-process figure


@dataclass(frozen=True)
class Options:
    runs: int = 3
    http_duration_s: float = 10.0
    connections: int = 64
    rate: float = 1000.0
    latency_duration_s: float = 20.0
    drain_s: float = 10.0  # latency runs: how long late answers are waited for
    warmup: int = 500
    inprocess_duration_s: float = 8.0
    batch_max: int = 256  # the server's default (CARTNUDGE_INGEST_BATCH_MAX)
    workers: int = 1  # cartnudge serve --workers


def summarize(values: list[float]) -> dict[str, Any]:
    """Median and spread of one figure over its runs."""
    clean = [v for v in values if not math.isnan(v)]
    if not clean:
        return {"median": None, "min": None, "max": None, "runs": values}
    return {
        "median": round(statistics.median(clean), 3),
        "min": round(min(clean), 3),
        "max": round(max(clean), 3),
        "runs": values,
    }


# -- PostgreSQL -----------------------------------------------------------------------------
class PostgresDatabases:
    """A private PostgreSQL with fsync on (``durable=True``); a fresh database per run."""

    def __init__(self) -> None:
        self.server = PostgresServer(durable=True)
        self.admin: Engine | None = None
        self.created = 0

    def __enter__(self) -> PostgresDatabases:
        self.server.start()
        self.admin = make_engine(self.server.url, pool_size=1)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.admin is not None:
            self.admin.dispose()
        self.server.stop()

    def fresh(self) -> str:
        assert self.admin is not None
        self.created += 1
        name = f"bench_{self.created}"
        with self.admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        return self.server.url.rsplit("/", 1)[0] + "/" + name

    def version(self) -> str:
        assert self.admin is not None
        with self.admin.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar_one())

    def settings(self) -> dict[str, str]:
        assert self.admin is not None
        with self.admin.connect() as conn:
            return {
                name: str(conn.execute(text(f"SHOW {name}")).scalar_one())
                for name in ("fsync", "synchronous_commit", "wal_sync_method", "full_page_writes")
            }


# -- through HTTP ---------------------------------------------------------------------------
def run_loadgen(server: ServerProcess, secret: str, mode: str, opts: Options) -> dict[str, Any]:
    duration = opts.latency_duration_s if mode == "open" else opts.http_duration_s
    argv = [sys.executable, "-m", "bench.loadgen", mode, "--host", HOST]
    argv += ["--port", str(server.port), "--slug", "bench", "--secret", secret]
    argv += ["--duration", str(duration), "--warmup", str(opts.warmup)]
    argv += ["--server-pid", str(server.pid), "--tag", f"b{server.port}"]
    if mode == "open":
        argv += ["--rate", str(opts.rate), "--connections", "32", "--drain", str(opts.drain_s)]
    else:
        argv += ["--connections", str(opts.connections)]
    done = subprocess.run(
        argv, cwd=REPO, capture_output=True, timeout=duration + LOADGEN_SLACK_S, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def http_run(
    mode: str, opts: Options, database_url: str | None = None, *, wrong_secret: bool = False
) -> dict[str, Any]:
    """One run against a new server on an empty database, then the acknowledged == stored
    check on the database once the server has stopped."""
    with ServerProcess(database_url, batch_max=opts.batch_max, workers=opts.workers) as server:
        shop = server.add_shop()
        secret = shop["webhooks"]["storefront"]["secret"]
        if wrong_secret:
            secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        server.start()
        try:
            result = run_loadgen(server, secret, mode, opts)
        finally:
            server.stop()
        counts = server.inbox_counts()
        log_tail = server.log_tail(10)
    acked = result["warmup"]["ok_2xx"] + result["timed"]["ok_2xx"]
    stored = sum(counts.values())
    # Requests the open-loop client gave up on (an overloaded server) may still have been
    # stored after the client left; they were never acknowledged, so they may only add rows.
    unknown = result.get("abandoned", 0) + sum(result["timed"]["errors"].values())
    result["acked_2xx"] = acked
    result["stored_rows"] = stored
    result["inbox_by_status"] = counts
    result["verified"] = acked <= stored <= acked + unknown and set(counts) <= {"applied"}
    if wrong_secret:  # every request refused, nothing stored
        result["verified"] = stored == 0 and set(result["timed"]["statuses"]) == {"401"}
    if not result["verified"]:
        result["server_log_tail"] = log_tail
    return result


# -- in one process -------------------------------------------------------------------------
def to_delivery(shop: ShopRecord, req: ExampleRequest, now: datetime) -> Delivery:
    """What the storefront lane does between reading the body and handing it to the writer."""
    verify_standard(req.body, req.headers, shop.storefront_secrets)
    payload = orjson.loads(req.body)
    webhook_id = req.headers["webhook-id"]
    topic = str(payload.get("type"))[:64]
    parsed = parse_payload("storefront", topic, webhook_id, payload, shop, now)
    return Delivery(shop, "storefront", webhook_id, topic, req.body.decode(), parsed, now)


def feed(
    writer: IngestWriter,
    shop: ShopRecord,
    source: Iterator[ExampleRequest],
    deadline: float,
    window: int,
) -> tuple[int, int, float]:
    """Verify, parse and submit deliveries with at most ``window`` in flight (as many as
    the HTTP figure has connections) until ``source`` runs dry or the deadline passes, then
    wait for every one. Returns (submitted, applied, time of the last answer)."""
    pending: deque[Future[Outcome]] = deque()
    submitted = applied = 0

    def settle() -> None:
        nonlocal applied
        if pending.popleft().result().status == "applied":
            applied += 1

    while time.perf_counter() < deadline:
        req = next(source, None)
        if req is None:
            break
        if len(pending) >= window:
            settle()
        pending.append(writer.submit(to_delivery(shop, req, system_clock())))
        submitted += 1
    while pending:
        settle()
    return submitted, applied, time.perf_counter()


def inprocess_run(database_url: str, opts: Options) -> dict[str, Any]:
    engine = make_engine(database_url, pool_size=2)
    upgrade(engine)
    with writing(engine) as conn:
        shop = add_shop(
            conn,
            slug="bench",
            name="Bench",
            timezone="Europe/London",
            currency="GBP",
            now=system_clock(),
        )
    now = system_clock()
    total = opts.warmup + int(opts.inprocess_duration_s * INPROCESS_MAX_RATE)
    requests = [
        signed_storefront(shop, storefront_event(cart_id=f"inproc-{i}", occurred_at=now), now)
        for i in range(total)
    ]
    statements = 0

    def count(*_args: Any) -> None:
        nonlocal statements
        statements += 1

    event.listen(engine, "before_cursor_execute", count)
    writer = IngestWriter(engine, system_clock, batch_max=opts.batch_max)
    writer.start()
    source = iter(requests)
    try:
        warm, _, _ = feed(
            writer, shop, itertools.islice(source, opts.warmup), math.inf, opts.connections
        )
        # Verify + parse alone, on requests already stored: the HTTP-free CPU cost of a lane.
        sample = requests[: min(2000, opts.warmup)]
        t = time.perf_counter()
        for req in sample:
            to_delivery(shop, req, now)
        parse_us = (time.perf_counter() - t) / max(1, len(sample)) * 1e6
        gc.collect()
        statements, batches0, deliveries0 = 0, writer.batches, writer.deliveries
        t0 = time.perf_counter()
        submitted, applied, last = feed(
            writer, shop, source, t0 + opts.inprocess_duration_s, opts.connections
        )
        elapsed = last - t0
        batches = writer.batches - batches0
        delivered = writer.deliveries - deliveries0
    finally:
        writer.stop()
        event.remove(engine, "before_cursor_execute", count)
    with engine.connect() as conn:
        stored = int(conn.execute(text("SELECT count(*) FROM inbox_events")).scalar_one())
    engine.dispose()
    return {
        "events": submitted,
        "window": opts.connections,
        "elapsed_s": round(elapsed, 3),
        "events_per_s": round(applied / elapsed, 1),
        "verify_parse_us_per_event": round(parse_us, 1),
        "write_us_per_event": round(elapsed / max(1, submitted) * 1e6 - parse_us, 1),
        "statements_per_event": round(statements / max(1, delivered), 2),
        "commits": batches,
        "events_per_commit": round(delivered / max(1, batches), 1),
        "stored_rows": stored,
        "pool_exhausted": warm + submitted >= total,
        "verified": applied == submitted and stored == warm + submitted,
    }


def inprocess_sqlite(tmp: Path, run: int, opts: Options) -> dict[str, Any]:
    return inprocess_run(f"sqlite:///{tmp / f'inprocess-{run}.db'}", opts)
