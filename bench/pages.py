"""The dashboard's pages with a million carts while webhooks arrive.

A shop holds ``--carts`` open carts (spread over the last 30 days), ``cartnudge serve``
runs on it, and ``bench.loadgen open`` sends ``--rate`` signed storefront webhooks a
second. Meanwhile a signed-in admin asks for the cart list, a filtered cart list, a cart's
page (a random cart each time) and Today, one after another, for ``--duration`` seconds.
Every answer must be 200; the figure is each page's latency percentiles.

Before serve starts, the tables are analysed on PostgreSQL (as autovacuum would have done
on a running system) and Today's closed days are tallied once as the loops would
(``tally_shops``, every day again), as a running system has done: the page then counts
only the day still open. The time that pass took is reported too.

    python -m bench.pages                                   # SQLite and PostgreSQL
    python -m bench.pages --carts 100000 --duration 20 --no-postgres

Writes ``bench/results/pages.md`` and ``pages.json`` (``--out`` for others).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from bench.ingest import PostgresDatabases
from bench.loadgen import percentile
from bench.machine import describe
from bench.server import HOST, ServerProcess
from cartnudge.db.engine import make_engine
from cartnudge.db.models import Cart, Shop
from cartnudge.db.session import reading
from cartnudge.measurement.tally import tally_shops
from cartnudge.testing.carts import insert_open_carts

RESULTS = Path(__file__).resolve().parent / "results"
PASSWORD = "a bench admin's password"
TARGET_MS = 150.0
SPREAD_DAYS = 30


def log(message: str) -> None:
    print(f"[pages {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def fill(server: ServerProcess, carts: int) -> tuple[str, list[int], float]:
    """The bench shop with ``carts`` open carts over the last 30 days, and an admin, its
    closed days tallied; the shop's storefront secret, a sample of cart ids, and the
    seconds the tally took."""
    shop = server.add_shop()
    server.cli("user", "add", "bench", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n")
    engine = make_engine(server.database_url)
    try:
        with reading(engine) as conn:
            shop_id = conn.execute(select(Shop.c.id).where(Shop.c.slug == "bench")).scalar_one()
        now = datetime.now(UTC)
        per_day = carts // SPREAD_DAYS
        for day in range(SPREAD_DAYS):
            count = per_day if day < SPREAD_DAYS - 1 else carts - per_day * (SPREAD_DAYS - 1)
            active = now - timedelta(days=day, minutes=5)
            insert_open_carts(
                engine, shop_id, count, active_at=active, wake_at=now + timedelta(days=7)
            )
        with reading(engine) as conn:
            top = conn.scalar(select(Cart.c.id).order_by(Cart.c.id.desc()).limit(1)) or 1
        if engine.dialect.name == "postgresql":
            # Statistics, as autovacuum gathers them within a minute of a bulk load on a
            # running system: without them the planner read every open cart for the
            # filtered list (0.6-0.7 s a page; 1-6 ms after ANALYZE), or not, depending on
            # whether autovacuum happened to come by before the measurement.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE")
        began = time.perf_counter()
        tally_shops(engine, datetime.now(UTC), everything=True)
        tally_s = time.perf_counter() - began
    finally:
        engine.dispose()
    rng = random.Random(7)
    sample = [rng.randint(1, top) for _ in range(2000)]
    return shop["webhooks"]["storefront"]["secret"], sample, tally_s


def signed_in(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30, follow_redirects=True)
    form = client.get("/signin").text
    token = form.split('name="form_token" value="')[1].split('"')[0]
    answer = client.post(
        "/signin", data={"login": "bench", "password": PASSWORD, "form_token": token, "next": "/"}
    )
    if answer.status_code != 200 or "/signin" in str(answer.url):
        raise RuntimeError(f"could not sign in: {answer.status_code}")
    return client


def run_once(database_url: str | None, carts: int, rate: float, duration: float) -> dict[str, Any]:
    with ServerProcess(database_url) as server:
        log(f"filling {carts:,} carts ({'PostgreSQL' if database_url else 'SQLite'})")
        started = time.perf_counter()
        secret, cart_ids, tally_s = fill(server, carts)
        log(f"filled and tallied ({tally_s:.1f} s) in {time.perf_counter() - started:.0f} s")
        server.start()
        base = f"http://{HOST}:{server.port}"
        client = signed_in(base)
        pages = {
            "cart list": lambda _: "/shops/bench/carts",
            "cart list, filtered": lambda _: (
                "/shops/bench/carts?status=open&reminded=no&tier=medium"
            ),
            "cart page": lambda n: f"/shops/bench/carts/{cart_ids[n % len(cart_ids)]}",
            "Today": lambda _: "/shops/bench/today",
        }
        for name, path in pages.items():  # warm: templates compiled, caches filled
            assert client.get(path(0)).status_code == 200, name
        load = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.loadgen",
                "open",
                "--port",
                str(server.port),
                "--slug",
                "bench",
                "--secret",
                secret,
                "--rate",
                str(rate),
                "--duration",
                str(duration),
                "--warmup",
                "0",
                "--tag",
                "pages",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(3)  # the load builds its requests, then sends
        timings: dict[str, list[float]] = {name: [] for name in pages}
        errors = 0
        n = 0
        deadline = time.monotonic() + duration - 4
        while time.monotonic() < deadline:
            for name, path in pages.items():
                began = time.perf_counter()
                answer = client.get(path(n))
                timings[name].append((time.perf_counter() - began) * 1000)
                errors += answer.status_code != 200
            n += 1
        out, _ = load.communicate(timeout=duration + 60)
        webhooks = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        client.close()
    figures = {}
    for name, values in timings.items():
        ordered = sorted(values)
        figures[name] = {
            "count": len(ordered),
            "p50_ms": round(percentile(ordered, 50), 1),
            "p95_ms": round(percentile(ordered, 95), 1),
            "p99_ms": round(percentile(ordered, 99), 1),
            "max_ms": round(ordered[-1], 1),
        }
    return {"pages": figures, "errors": errors, "webhooks": webhooks, "tally_s": round(tally_s, 2)}


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"# The dashboard's pages under load — {report['at']}",
        "",
        f"Command: `python -m bench.pages {' '.join(report['argv'])}`. {report['carts']:,} open "
        f"carts over {SPREAD_DAYS} days in one shop; `bench.loadgen open` at {report['rate']:,.0f} "
        "storefront webhooks/s meanwhile; a signed-in admin asks each page in turn. "
        "Before serve started, the tables were analysed (PostgreSQL) and Today's closed "
        "days tallied once, as the loops would. "
        f"Target: p95 ≤ {TARGET_MS:.0f} ms.",
        "",
        "| database | page | asked | p50 ms | p95 ms | p99 ms | max ms | target |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for database, run in report["runs"].items():
        for page, f in run["pages"].items():
            verdict = "met" if f["p95_ms"] <= TARGET_MS else "**missed**"
            lines.append(
                f"| {database} | {page} | {f['count']} | {f['p50_ms']} | {f['p95_ms']} | "
                f"{f['p99_ms']} | {f['max_ms']} | {verdict} |"
            )
    lines.append("")
    for database, run in report["runs"].items():
        w = run["webhooks"]
        timed = w.get("timed", {})
        latency = w.get("latency_ms", {})
        lines.append(
            f"- {database}: pages answered other than 200: {run['errors']}; webhooks offered "
            f"at {w.get('achieved_offered_rate', '?')}/s, {timed.get('sent', '?')} sent, "
            f"{timed.get('ok_2xx', '?')} acknowledged (2xx), their p99 "
            f"{latency.get('p99', '?')} ms; tallying the 31 closed days took "
            f"{run.get('tally_s', '?')} s."
        )
    lines += [
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['python']}, SQLite {m['sqlite']}; "
        f"{m['postgresql']}; CPU reference (`sum(range(10**6))`, best of 5) "
        f"{m['cpu_reference_ms']} ms. Code: commit {m['code'].get('commit', '?')}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pages", description=__doc__)
    parser.add_argument("--carts", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=500.0, help="webhooks/s meanwhile")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "pages")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    report: dict[str, Any] = {
        "at": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "argv": sys.argv[1:] if argv is None else argv,
        "carts": args.carts,
        "rate": args.rate,
        "machine": describe(),
        "runs": {},
    }
    report["runs"]["SQLite"] = run_once(None, args.carts, args.rate, args.duration)
    if not args.no_postgres:
        with PostgresDatabases() as pg:
            report["runs"]["PostgreSQL"] = run_once(
                pg.fresh(), args.carts, args.rate, args.duration
            )
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str))
    args.out.with_suffix(".md").write_text(markdown(report))
    log(f"wrote {args.out.with_suffix('.md')}")
    failed = any(run["errors"] for run in report["runs"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
