"""The soak: ``make soak`` or ``python -m bench.soak [--minutes 10] [--rate 1000]``.

One ``cartnudge serve`` (web process, ingest writer, waiter and sender loops) on a new SQLite
database (``--postgres``: a private PostgreSQL) takes webhooks at a fixed offered rate for
``--minutes`` while reminders flow: a share of the carts (``--remindable``, 10 %) has an
opted-in address of its own and the shop's rules remind 90 s after the last activity, so from
the second minute on the loops send to a local SMTP server while intake goes on. The load is
open loop (bench/loadgen.py), one process per minute, each building its requests while the
previous minute runs (signatures stay valid for 5 minutes only).

Reported per minute: the rate sent, ack latency percentiles, the server's memory (PSS and RSS
of all its processes) and the reminders sent; at the end, acknowledged == stored and every
due reminder sent. Writes bench/results/soak.md and soak.json. Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench import machine
from bench.ingest import REPO, PostgresDatabases
from bench.machine import memory_mib
from bench.sender import smtp_sink
from bench.server import HOST, ServerProcess
from cartnudge.db.engine import make_engine
from cartnudge.db.models import Send
from cartnudge.db.session import reading

RESULTS = Path(__file__).resolve().parent / "results"
SEGMENT_S = 60.0
BUILD_AHEAD_S = 25.0  # a minute's requests take 5 to 10 s to build; start well ahead
MEMORY_EVERY_S = 5.0
DRAIN_LIMIT_S = 300.0  # after the load: how long the last reminders may take to go out
REMIND_AFTER_S = 90  # the rules below: one reminder, 90 s after the cart's last activity
RULES = f"""\
tiers:
  - {{name: all, from: 0, waits: [{REMIND_AFTER_S}s, 1d]}}
steps: 1
give_up_after: 2d
quiet_hours: null
do_not_disturb: 7d
minimum_cart_value: 0
wait_override: null
consent: require_opt_in
"""


def log(message: str) -> None:
    print(f"[soak {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


class MemorySampler(threading.Thread):
    """The server tree's memory every ``MEMORY_EVERY_S`` seconds, stamped with wall time."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[dict[str, float]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(MEMORY_EVERY_S):
            self.samples.append({"t": time.time(), **memory_mib(self.pid)})


def segment(
    server: ServerProcess, secret: str, args: argparse.Namespace, k: int, start_at: float
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "bench.loadgen", "open", "--host", HOST]
    argv += ["--port", str(server.port), "--slug", "bench", "--secret", secret]
    argv += ["--rate", str(args.rate), "--duration", str(SEGMENT_S), "--connections", "32"]
    argv += ["--warmup", "500" if k == 0 else "0", "--drain", "10", "--start-at", str(start_at)]
    argv += ["--remindable", str(args.remindable), "--tag", f"soak{k}"]
    argv += ["--server-pid", str(server.pid)]
    return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def drive(server: ServerProcess, secret: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Minute after minute of open-loop load, each minute's generator started ahead."""
    first = time.time() + BUILD_AHEAD_S
    minutes: list[dict[str, Any]] = []
    running = segment(server, secret, args, 0, first)
    for k in range(args.minutes):
        start_at = first + k * SEGMENT_S
        following = None
        if k + 1 < args.minutes:
            time.sleep(max(0.0, start_at + SEGMENT_S - BUILD_AHEAD_S - time.time()))
            following = segment(server, secret, args, k + 1, start_at + SEGMENT_S)
        out, err = running.communicate(timeout=SEGMENT_S + BUILD_AHEAD_S + 120)
        if running.returncode != 0:
            raise RuntimeError(f"load generator failed: {err.decode()[-2000:]}")
        result = json.loads(out)
        result["start_at"] = start_at
        minutes.append(result)
        lat = result["latency_ms"]
        log(
            f"minute {k + 1}/{args.minutes}: sent {result['achieved_offered_rate']}/s, "
            f"p50 {lat['p50']} ms, p99 {lat['p99']} ms, p99.9 {lat['p99.9']} ms, "
            f"unanswered {result['abandoned']}"
        )
        if following is not None:
            running = following
    return minutes


def sends_by_minute(database_url: str, starts: list[float]) -> tuple[list[int], dict[str, int]]:
    """Reminders accepted by the SMTP server in each minute, and every send by status."""
    sends = Send
    engine = make_engine(database_url)
    try:
        with reading(engine) as conn:
            sent_at = [r for (r,) in conn.execute(select(sends.c.sent_at)) if r is not None]
            status = dict(
                conn.execute(select(sends.c.status, func.count()).group_by(sends.c.status)).all()
            )
    finally:
        engine.dispose()
    per_minute = [
        sum(1 for t in sent_at if start <= t.timestamp() < start + SEGMENT_S) for start in starts
    ]
    return per_minute, {str(k): int(v) for k, v in status.items()}


def wait_for_reminders(database_url: str, limit_s: float) -> None:
    """Until no send is queued or being sent (the last carts come due 90 s after the load)."""
    sends = Send
    engine = make_engine(database_url)
    deadline = time.monotonic() + limit_s
    try:
        while time.monotonic() < deadline:
            with reading(engine) as conn:
                left = conn.execute(
                    select(func.count())
                    .select_from(sends)
                    .where(sends.c.status.in_(("queued", "sending")))
                ).scalar_one()
            if left == 0:
                return
            time.sleep(2)
    finally:
        engine.dispose()


def soak(args: argparse.Namespace, database_url: str | None) -> dict[str, Any]:
    with smtp_sink() as port, ServerProcess(database_url) as server:
        activated = (datetime.now(UTC) - timedelta(days=1)).isoformat()
        shop = server.add_shop(
            "bench",
            *("--sender", "Bench Shop <hello@bench.example>"),
            *("--address", "1 Bench Street, London"),
            *("--mail", f"smtp://127.0.0.1:{port}"),
            *("--activated-at", activated),
        )
        server.cli("rules", "set", "-", "--shop", "bench", stdin=RULES)
        secret = shop["webhooks"]["storefront"]["secret"]
        server.start()
        sampler = MemorySampler(server.pid)
        sampler.start()
        try:
            minutes = drive(server, secret, args)
            # The last carts come due REMIND_AFTER_S after the load; then their sends go out.
            log("load done; waiting for the last carts to come due and their reminders to go")
            time.sleep(REMIND_AFTER_S + 5)
            wait_for_reminders(server.database_url, DRAIN_LIMIT_S)
        finally:
            sampler.halt.set()
            server.stop()
        counts = server.inbox_counts()
        reminders, statuses = sends_by_minute(server.database_url, [m["start_at"] for m in minutes])
    acked = sum(m["warmup"]["ok_2xx"] + m["timed"]["ok_2xx"] for m in minutes)
    unknown = sum(m["abandoned"] + sum(m["timed"]["errors"].values()) for m in minutes)
    stored = sum(counts.values())
    for m, sent in zip(minutes, reminders, strict=True):
        m["reminders_sent"] = sent
        during = [s for s in sampler.samples if m["start_at"] <= s["t"] < m["start_at"] + 60]
        m["memory_mib"] = during[-1] if during else None
    return {
        "minutes": minutes,
        "memory_samples": sampler.samples,
        "acknowledged": acked,
        "stored": stored,
        "inbox_by_status": counts,
        "sends_by_status": statuses,
        "verified": acked <= stored <= acked + unknown
        and set(counts) <= {"applied"}
        # Anonymous carts get no send (only closed when given up); a skipped send is a
        # recorded decision, not a loss.
        and set(statuses) <= {"sent", "skipped"},
    }


def markdown(report: dict[str, Any], args: argparse.Namespace) -> str:
    m = report["machine"]
    rows = [
        "| minute | sent/s | p50 ms | p95 ms | p99 ms | p99.9 ms | max ms | unanswered "
        "| reminders sent | PSS MiB | RSS MiB | server CPU cores |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for k, minute in enumerate(report["minutes"], 1):
        lat, mem = minute["latency_ms"], minute["memory_mib"] or {}
        rows.append(
            f"| {k} | {minute['achieved_offered_rate']:,.0f} | {lat['p50']:.1f} | "
            f"{lat['p95']:.1f} | {lat['p99']:.1f} | {lat['p99.9']:.1f} | {lat['max']:.1f} | "
            f"{minute['abandoned']:,} | {minute['reminders_sent']:,} | {mem.get('pss', '–')} | "
            f"{mem.get('rss', '–')} | {minute['server_cpu_cores']:.2f} |"
        )
    return "\n".join(
        [
            f"# Soak — {report['finished_at']}",
            "",
            f"Command: `{report['command']}` ({report['duration_s']:.0f} s): "
            f"{args.minutes} minutes at an offered {args.rate:,.0f} webhooks/s on "
            f"{report['database']}, {args.remindable:.0%} of the carts remindable (reminded "
            "90 s after their last activity, to a local SMTP server).",
            "",
            *rows,
            "",
            f"Acknowledged {report['acknowledged']:,}, stored {report['stored']:,} "
            f"({report['inbox_by_status']}); sends by status {report['sends_by_status']}; "
            f"verified: {report['verified']}.",
            "",
            f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB; {m['python']}; "
            f"SQLite {m['sqlite']}; load average at start {m['load_average_at_start']}; code "
            f"{m['code']['commit']}.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1000.0, help="offered webhooks/s")
    parser.add_argument("--remindable", type=float, default=0.1, help="share of carts reminded")
    parser.add_argument("--postgres", action="store_true", help="a private PostgreSQL")
    parser.add_argument("--out", type=Path, default=RESULTS / "soak")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.minutes < 1 or not 0 <= args.remindable <= 1:
        parser.error("--minutes must be at least 1 and --remindable between 0 and 1")
    started = time.perf_counter()
    described = machine.describe()
    if args.postgres:
        with PostgresDatabases() as pg:
            report = soak(args, pg.fresh())
    else:
        report = soak(args, None)
    report.update(
        command=" ".join(["python -m bench.soak", *(argv or sys.argv[1:])]),
        machine=described,
        database="PostgreSQL" if args.postgres else "SQLite",
        finished_at=f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        duration_s=round(time.perf_counter() - started, 1),
    )
    text = markdown(report, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0 if report["verified"] else 1


if __name__ == "__main__":
    sys.exit(main())
