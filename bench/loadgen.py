"""HTTP load generators for the intake benchmark, each run in a process of its own.

    python -m bench.loadgen closed --port P --slug S --secret whsec_… --duration 10
    python -m bench.loadgen open --port P --slug S --secret whsec_… --rate 1000 --duration 20

Both build every signed request before the clock starts, speak HTTP/1.1 keep-alive over
raw sockets (asyncio protocols on uvloop, httptools' C parser: a few µs of client CPU per
request) and print one JSON object on stdout.

closed  C connections; each sends its next request as soon as the previous one is answered,
        which saturates the server. Sending stops at the deadline and every request already
        sent is waited for, so the count of 2xx answers is exact and can be compared with the
        rows stored.
open    requests leave on a fixed schedule (request i at t0 + i / rate) whatever the server
        does, on an idle connection or a new one. Latency is measured from the *scheduled*
        time, so a stalled server shows up as latency and never as a lower offered load
        (no coordinated omission).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import sys
import time
from collections import Counter, deque
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httptools

from bench.machine import CpuMeter
from cartnudge.intake.examples import signed_storefront, storefront_event
from cartnudge.shops.repository import ShopRecord

CONNECT_TIMEOUT_S = 10.0
WARMUP_TIMEOUT_S = 60.0  # a server that cannot answer the warm-up in this time is broken
DRAIN_TIMEOUT_S = 30.0  # closed mode waits at most this long for answers after the deadline


# -- requests -------------------------------------------------------------------------------
def signing_shop(slug: str, secret: str) -> ShopRecord:
    """Just enough of a shop to sign storefront deliveries for it."""
    now = datetime.now(UTC)
    return ShopRecord(
        id=0,
        slug=slug,
        name=slug,
        timezone="Europe/London",
        currency="GBP",
        shopify_domain=None,
        shopify_secret=None,
        stripe_secret=None,
        storefront_secrets=(secret,),
        order_match_window_s=7 * 86400,
        activated_at=now,
        created_at=now,
    )


def build_requests(
    host: str, port: int, slug: str, secret: str, count: int, tag: str, remindable: float = 0.0
) -> list[bytes]:
    """``count`` distinct, correctly signed storefront deliveries, each for a new cart,
    as raw HTTP/1.1 requests (Standard Webhooks signatures stay valid for 5 minutes).
    With ``remindable`` > 0, that share of the carts has an address of its own (opted in)
    and the rest none, as in a shop where most carts are anonymous; otherwise every cart has
    the same address."""
    shop = signing_shop(slug, secret)
    now = datetime.now(UTC)
    every = round(1 / remindable) if remindable > 0 else 0
    out: list[bytes] = []
    for i in range(count):
        cart = f"{tag}-{i}"
        event = storefront_event(cart_id=cart, occurred_at=now)
        if every:
            event["email"] = f"{cart}@shoppers.example" if i % every == 0 else None
        req = signed_storefront(shop, event, now)
        lines = [f"POST {req.path} HTTP/1.1", f"host: {host}:{port}"]
        lines += [f"{name}: {value}" for name, value in req.headers.items()]
        lines.append(f"content-length: {len(req.body)}")
        out.append(("\r\n".join(lines) + "\r\n\r\n").encode() + req.body)
    return out


# -- one keep-alive connection --------------------------------------------------------------
class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection with at most one request outstanding."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)
            if self.transport is not None:
                self.transport.close()

    def on_message_complete(self) -> None:  # httptools callback
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionResetError("connection closed by the server"))

    def _fail(self, exc: BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def send(self, raw: bytes) -> asyncio.Future[int]:
        assert self.transport is not None and self.waiter is None
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiter = waiter
        self.transport.write(raw)
        return waiter


async def connect(host: str, port: int) -> Connection:
    loop = asyncio.get_running_loop()
    _, conn = await asyncio.wait_for(
        loop.create_connection(Connection, host, port), CONNECT_TIMEOUT_S
    )
    return conn


# -- bookkeeping ----------------------------------------------------------------------------
@dataclass
class Tally:
    sent: int = 0
    ok: int = 0  # 2xx answers: acknowledged, so stored
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    def answer(self, status: int) -> None:
        self.statuses[status] += 1
        if 200 <= status < 300:
            self.ok += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "ok_2xx": self.ok,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": dict(self.errors),
        }


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


# -- closed loop: saturation throughput -----------------------------------------------------
async def drive(
    host: str, port: int, conns: list[Connection], source: Iterator[bytes], deadline: float
) -> tuple[Tally, float]:
    """Every connection sends the next request from ``source`` as soon as it is free, until
    ``source`` runs dry or the deadline passes; returns the tally and the last answer time."""
    tally = Tally()
    last = time.perf_counter()

    async def worker(index: int) -> None:
        nonlocal last
        while time.perf_counter() < deadline:
            raw = next(source, None)
            if raw is None:
                return
            tally.sent += 1
            try:
                if conns[index].closed:
                    conns[index] = await connect(host, port)
                status = await conns[index].send(raw)
            except (OSError, TimeoutError, httptools.HttpParserError) as exc:
                tally.errors[type(exc).__name__] += 1
                continue
            tally.answer(status)
            last = time.perf_counter()

    await asyncio.gather(*(worker(i) for i in range(len(conns))))
    return tally, last


async def run_closed(args: argparse.Namespace, requests: list[bytes]) -> dict[str, Any]:
    conns = list(
        await asyncio.gather(*(connect(args.host, args.port) for _ in range(args.connections)))
    )
    source = iter(requests)
    warm, _ = await asyncio.wait_for(
        drive(args.host, args.port, conns, itertools.islice(source, args.warmup), math.inf),
        WARMUP_TIMEOUT_S,
    )
    meter = CpuMeter(args.server_pid)
    t0 = time.perf_counter()
    tally, last = await asyncio.wait_for(
        drive(args.host, args.port, conns, source, t0 + args.duration),
        args.duration + DRAIN_TIMEOUT_S,
    )
    elapsed = last - t0
    cpu = meter.stop()
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    return {
        "mode": "closed",
        "connections": args.connections,
        "warmup": warm.as_dict(),
        "timed": tally.as_dict(),
        "elapsed_s": round(elapsed, 3),
        "events_per_s": round(tally.ok / elapsed, 1) if elapsed > 0 else 0.0,
        "answers_per_s": round(sum(tally.statuses.values()) / elapsed, 1) if elapsed > 0 else 0.0,
        "pool_exhausted": tally.sent + warm.sent >= len(requests),
        **cpu,
    }


# -- open loop: latency at a fixed offered rate ---------------------------------------------
async def run_open(args: argparse.Namespace, requests: list[bytes]) -> dict[str, Any]:
    host, port, rate = args.host, args.port, args.rate
    idle = list(await asyncio.gather(*(connect(host, port) for _ in range(args.connections))))
    every = list(idle)  # to close them all at the end, busy or not
    warm, _ = await asyncio.wait_for(
        drive(host, port, idle, iter(requests[: args.warmup]), math.inf), WARMUP_TIMEOUT_S
    )
    timed = requests[args.warmup :]
    n = len(timed)
    latency = [math.inf] * n  # a request never answered counts as infinitely slow
    sent_at = [math.nan] * n
    tally = Tally()
    waiting: deque[int] = deque()  # due while every allowed connection was busy
    tasks: set[asyncio.Task[None]] = set()
    queued = 0

    def spawn(coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def fire(i: int, conn: Connection | None) -> None:
        scheduled = t0 + i / rate
        sent_at[i] = time.perf_counter()
        tally.sent += 1
        try:
            if conn is None or conn.closed:
                conn = await connect(host, port)
                every.append(conn)
            status = await conn.send(timed[i])
        except (OSError, TimeoutError, httptools.HttpParserError) as exc:
            tally.errors[type(exc).__name__] += 1
            conn = None
        else:
            latency[i] = time.perf_counter() - scheduled
            tally.answer(status)
        if waiting:
            spawn(fire(waiting.popleft(), conn))
        elif conn is not None:
            idle.append(conn)

    meter = CpuMeter(args.server_pid)
    # --start-at lets the next segment of a long run build its requests while this one runs.
    t0 = time.perf_counter() + max(0.05, (args.start_at or 0.0) - time.time())
    i = 0
    while i < n:
        now = time.perf_counter()
        while i < n and t0 + i / rate <= now:
            if idle:
                spawn(fire(i, idle.pop()))
            elif len(every) + len(tasks) < args.max_connections:
                spawn(fire(i, None))
            else:
                waiting.append(i)
                queued += 1
            i += 1
        if i < n:
            await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
    drain_deadline = time.perf_counter() + args.drain
    while tasks and time.perf_counter() < drain_deadline:
        await asyncio.wait(set(tasks), timeout=max(0.0, drain_deadline - time.perf_counter()))
    abandoned = len(tasks) + len(waiting)  # still unanswered at the drain deadline
    cpu = meter.stop()
    for task in list(tasks):
        task.cancel()
    for conn in every:
        if conn.transport is not None:
            conn.transport.close()
    sends = sorted(v for v in sent_at if not math.isnan(v))
    span = sends[-1] - sends[0] if len(sends) > 1 else math.nan
    ordered = sorted(latency)
    ms = 1000.0

    def pct(q: float) -> float:
        return round(percentile(ordered, q) * ms, 3)

    return {
        "mode": "open",
        "target_rate": rate,
        "scheduled": n,
        "scheduled_span_s": round((n - 1) / rate, 3),
        "achieved_offered_rate": round((len(sends) - 1) / span, 1) if span > 0 else math.nan,
        "not_sent": n - len(sends),
        "abandoned": abandoned,
        "connections_opened": len(every),
        "queued_for_a_connection": queued,
        "send_lag_ms_max": round(
            max(
                (sent_at[j] - t0 - j / rate for j in range(n) if not math.isnan(sent_at[j])),
                default=math.nan,
            )
            * ms,
            3,
        ),
        "latency_ms": {
            "p50": pct(50),
            "p95": pct(95),
            "p99": pct(99),
            "p99.9": pct(99.9),
            "max": round(ordered[-1] * ms, 3) if ordered else math.nan,
        },
        "warmup": warm.as_dict(),
        "timed": tally.as_dict(),
        **cpu,
    }


# -- entry ----------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("mode", choices=["closed", "open"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--slug", required=True)
    parser.add_argument("--secret", required=True, help="the shop's storefront secret")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of timed load")
    parser.add_argument("--warmup", type=int, default=500, help="untimed requests first")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--max-connections", type=int, default=1024, help="open mode")
    parser.add_argument("--rate", type=float, default=1000.0, help="open mode: requests/s")
    parser.add_argument(
        "--drain", type=float, default=10.0, help="open mode: seconds to wait for late answers"
    )
    parser.add_argument(
        "--count", type=int, default=None, help="requests to pre-build (closed mode)"
    )
    parser.add_argument("--tag", default=f"run{os.getpid()}", help="cart id prefix")
    parser.add_argument(
        "--remindable", type=float, default=0.0, help="share of carts with their own address"
    )
    parser.add_argument(
        "--start-at", type=float, default=None, help="open mode: Unix time of the first request"
    )
    parser.add_argument("--server-pid", type=int, default=None, help="to report its CPU use")
    args = parser.parse_args(argv)
    if args.host not in {"127.0.0.1", "localhost", "::1"}:
        parser.error("the benchmark only sends traffic to this machine (127.0.0.1)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.mode == "open":
        count = args.warmup + math.ceil(args.rate * args.duration)
    else:
        count = args.count or args.warmup + int(args.duration * 12_000)
    started = time.perf_counter()
    requests = build_requests(
        args.host, args.port, args.slug, args.secret, count, args.tag, args.remindable
    )
    built_s = time.perf_counter() - started
    runner = run_open if args.mode == "open" else run_closed
    try:
        import uvloop

        loop_factory: Any = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner_loop:
        try:
            result = runner_loop.run(runner(args, requests))
        except TimeoutError:
            sys.exit("load generator: the server stopped answering (timed out)")
    result["requests_built"] = count
    result["build_s"] = round(built_s, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
