"""The intake benchmark: ``make bench`` or ``python -m bench.run [--only FIGURE,…]``.

Writes bench/results/latest.md and latest.json (a run with --only writes
bench/results/only.md and only.json instead, so the full table is not overwritten).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import machine, memory, sender, waiter
from bench.ingest import (
    FIGURES as INTAKE_FIGURES,
)
from bench.ingest import (
    Options,
    PostgresDatabases,
    http_run,
    inprocess_run,
    inprocess_sqlite,
    summarize,
)
from cartnudge.db.engine import make_engine

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_HTTP_EVENTS_S = 3000.0  # the issue: ≥ 3,000 events/s through HTTP on SQLite
TARGET_P99_MS = 50.0  # the issue: p99 ack ≤ 50 ms at 1,000 events/s offered
PERCENTILES = ("p50", "p95", "p99", "p99.9", "max")
DUE_PERCENTILES = ("claim_p50", "claim_p99", "claim_max", "send_p50", "send_p99")
TARGET_CARTS_S = 5000.0  # the timing issue: ≥ 5,000 carts/s decided
TARGET_EMAILS_S = 500.0  # the timing issue: ≥ 500 emails/s delivered
TARGET_PG_HTTP_EVENTS_S = 2000.0  # the hardening issue: ≥ 2,000 events/s through HTTP, PostgreSQL
TARGET_PG_HTTP_RATIO = 0.70  # … and ≥ 70 % of the in-process figure
TARGET_SERVE_PSS_MIB = 120.0  # the hardening issue: serve ≤ 120 MiB PSS, idle and at a million
FIGURES = (
    *INTAKE_FIGURES,
    "waiter",
    "waiter_pg",
    "sweep",
    "sweep_pg",
    "compose",
    "deliver",
    "deliver_pg",
    "due_claimed",
    "due_claimed_pg",
    "memory",
    "peers",
)


def log(message: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def repeat(name: str, runs: int, once: Callable[[int], dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i in range(1, runs + 1):
        started = time.perf_counter()
        result = once(i)
        out.append(result)
        if "latency_ms" in result:
            headline = f"p99 {result['latency_ms']['p99']} ms"
        elif result.get("events_per_s"):
            headline = f"{result['events_per_s']} events/s"
        elif "answers_per_s" in result:  # refused by design: answers, not events
            headline = f"{result['answers_per_s']} answers/s"
        else:
            headline = ", ".join(
                f"{k} {v}" for k, v in result.items() if k != "verified" and not isinstance(v, dict)
            )
        log(
            f"{name} run {i}/{runs}: {headline} "
            f"(verified={result.get('verified')}, {time.perf_counter() - started:.0f} s)"
        )
    return out


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
    return round(statistics.median(values), 3) if values else None


def throughput_figure(
    runs: list[dict[str, Any]], *, key: str = "events_per_s", unit: str = "events/s", **extra: Any
) -> dict[str, Any]:
    figure = {
        "unit": unit,
        "summary": summarize([float(r[key]) for r in runs]),
        "verified": all(r["verified"] for r in runs),
        **extra,
        "runs": runs,
    }
    for name in (
        "server_cpu_cores",
        "client_cpu_cores",
        "other_cpu_cores",
        "stolen_cpu_cores",
        "statements_per_event",
        "events_per_commit",
        "verify_parse_us_per_event",
        "write_us_per_event",
    ):
        value = median_of(runs, name)
        if value is not None:
            figure[f"median_{name}"] = value
    return figure


def value_figure(runs: list[dict[str, Any]], key: str, unit: str, **extra: Any) -> dict[str, Any]:
    """One number per run (rate, time or size): its median and spread."""
    return {
        "unit": unit,
        "summary": summarize([float(r[key]) for r in runs]),
        "verified": all(r.get("verified", True) for r in runs),
        **extra,
        "runs": runs,
    }


def latency_figure(runs: list[dict[str, Any]], rate: float) -> dict[str, Any]:
    return {
        "unit": "ms",
        "offered_rate": rate,
        "summary": {q: summarize([float(r["latency_ms"][q]) for r in runs]) for q in PERCENTILES},
        "achieved_offered_rate": summarize([float(r["achieved_offered_rate"]) for r in runs]),
        "abandoned": sum(r["abandoned"] for r in runs),
        "queued_for_a_connection": sum(r["queued_for_a_connection"] for r in runs),
        "verified": all(r["verified"] for r in runs),
        "median_server_cpu_cores": median_of(runs, "server_cpu_cores"),
        "median_client_cpu_cores": median_of(runs, "client_cpu_cores"),
        "median_other_cpu_cores": median_of(runs, "other_cpu_cores"),
        "median_stolen_cpu_cores": median_of(runs, "stolen_cpu_cores"),
        "runs": runs,
    }


@dataclass(frozen=True)
class Sizes:
    """How big the timing, delivery, memory and peer figures are."""

    sends: int = 5_000  # emails composed, and due sends delivered, per run
    due: int = 20_000  # due carts the waiter decides per run
    due_carts: int = 300  # carts coming due on the real clock for due → claimed
    sweep_open: int = 10_000  # open carts for the small sweep (the large one is ``million``)
    million: int = 1_000_000  # open carts held by the server for memory and the large sweep
    peers: int = 1_000_000  # pending reminders scheduled in each peer


def measure(
    selected: list[str], opts: Options, sizes: Sizes, with_postgres: bool
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    measure_intake(selected, opts, figures)
    wants_pg = [f for f in selected if f.endswith("_pg")]
    if wants_pg and not with_postgres:
        log(f"skipping {', '.join(wants_pg)} (--no-postgres)")
    if wants_pg and with_postgres:
        log("starting a private PostgreSQL (durable: fsync on)")
        with PostgresDatabases() as pg:
            figures["postgres"] = {"version": pg.version(), "settings": pg.settings()}
            measure_intake_pg(selected, opts, figures, pg)
            measure_reminders(selected, opts, sizes, figures, pg.fresh, "_pg")
    measure_reminders(selected, opts, sizes, figures, None, "")
    measure_memory(selected, opts, sizes, figures)
    for http, inproc in (("ingest_http", "inprocess"), ("ingest_http_pg", "inprocess_pg")):
        a = figures.get(http, {}).get("summary", {}).get("median")
        b = figures.get(inproc, {}).get("summary", {}).get("median")
        if a and b:
            figures[f"ratio_{http}_to_{inproc}"] = round(a / b, 3)
    if "peers" in selected:
        figures["peers"] = measure_peers(sizes)
    return figures


def measure_peers(sizes: Sizes) -> dict[str, Any]:
    """``python -m bench.peers`` in a process of its own (it starts and kills Redis, Celery
    and APScheduler processes); its JSON, also kept as bench/results/peers.json."""
    log(f"peers: {sizes.peers:,} pending reminders in each system (about 35 minutes)")
    out = RESULTS / "peers"
    # Ten minutes to schedule (the limit), five to fire the due ones, one to watch a
    # restarted system; PostgreSQL is left to `python -m bench.peers --only cartnudge-pg`.
    argv = ["--count", str(sizes.peers), "--due", "10000", "--time-limit", "600"]
    argv += ["--fire-limit", "300", "--restart-window", "60"]
    argv += ["--only", "cartnudge,celery,apscheduler", "--out", str(out)]
    subprocess.run(
        [sys.executable, "-m", "bench.peers", *argv], cwd=RESULTS.parent.parent, check=True
    )
    document: dict[str, Any] = json.loads(out.with_suffix(".json").read_text())
    return document


def peers_lines(document: dict[str, Any]) -> list[str]:
    """The peers' table and ratios, as bench/results/peers.md has them."""
    from bench import peers  # Celery and APScheduler load only when compared with

    names = {f.name for f in dataclasses.fields(peers.Result)}
    results = [
        peers.Result(**{k: v for k, v in r.items() if k in names}) for r in document["results"]
    ]
    return [*peers.table(results), "", *peers.ratios(results)]


def peers_section(report: dict[str, Any]) -> list[str]:
    """The peers measured in this run, else the last peers run (bench/results/peers.json)."""
    if "peers" in report["figures"]:
        document, note = report["figures"]["peers"], "this run"
    elif (RESULTS / "peers.json").exists():
        document = json.loads((RESULTS / "peers.json").read_text())
        note = f"not this run: `bench/results/peers.md` of {document['finished']}"
    else:
        return []
    count = document["options"]["count"]
    return [
        f"Peers: {count:,} pending reminders each ({note}; details and each process's own "
        "figures in `bench/results/peers.md`).",
        "",
        *peers_lines(document),
        "",
    ]


def measure_intake(selected: list[str], opts: Options, figures: dict[str, Any]) -> None:
    if "ingest_http" in selected:
        runs = repeat("ingest_http", opts.runs, lambda _i: http_run("closed", opts))
        figures["ingest_http"] = throughput_figure(runs, connections=opts.connections)
    if "latency_http" in selected:
        runs = repeat("latency_http", opts.runs, lambda _i: http_run("open", opts))
        figures["latency_http"] = latency_figure(runs, opts.rate)
        capacity = figures.get("ingest_http", {}).get("summary", {}).get("median")
        if capacity and capacity < opts.rate:
            # The target rate overloads the server; also show latency where it keeps up.
            slower = Options(
                **{**opts.__dict__, "rate": round(capacity * 0.5), "latency_duration_s": 10.0}
            )
            runs = repeat(
                "latency_http_half_capacity", opts.runs, lambda _i: http_run("open", slower)
            )
            figures["latency_http_half_capacity"] = latency_figure(runs, slower.rate)
    if "http_ceiling" in selected:
        runs = repeat(
            "http_ceiling", opts.runs, lambda _i: http_run("closed", opts, wrong_secret=True)
        )
        figures["http_ceiling"] = throughput_figure(
            runs, key="answers_per_s", unit="401 answers/s", connections=opts.connections
        )
    if "inprocess" in selected:
        tmp = Path(tempfile.mkdtemp(prefix="cartnudge-bench-"))
        try:
            runs = repeat("inprocess", opts.runs, lambda i: inprocess_sqlite(tmp, i, opts))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        figures["inprocess"] = throughput_figure(runs, window=opts.connections)


def measure_intake_pg(
    selected: list[str], opts: Options, figures: dict[str, Any], pg: PostgresDatabases
) -> None:
    if "inprocess_pg" in selected:
        runs = repeat("inprocess_pg", opts.runs, lambda _i: inprocess_run(pg.fresh(), opts))
        figures["inprocess_pg"] = throughput_figure(runs, window=opts.connections)
    if "ingest_http_pg" in selected:
        runs = repeat("ingest_http_pg", opts.runs, lambda _i: http_run("closed", opts, pg.fresh()))
        figures["ingest_http_pg"] = throughput_figure(runs, connections=opts.connections)


def measure_reminders(
    selected: list[str],
    opts: Options,
    sizes: Sizes,
    figures: dict[str, Any],
    fresh: Callable[[], str] | None,
    suffix: str,
) -> None:
    """The waiter and the sender on one database: SQLite files in a temporary folder
    (``fresh`` None) or new PostgreSQL databases."""
    tmp = Path(tempfile.mkdtemp(prefix="cartnudge-bench-"))
    made = iter(range(1_000_000))

    def url() -> str:
        return fresh() if fresh else f"sqlite:///{tmp / f'db{next(made)}.db'}"

    try:
        if suffix == "" and "compose" in selected:
            runs = repeat("compose", opts.runs, lambda _i: sender.compose_figure(sizes.sends))
            figures["compose"] = value_figure(runs, "per_s", "emails/s", count=sizes.sends)
        if f"waiter{suffix}" in selected:
            runs = repeat(
                f"waiter{suffix}", opts.runs, lambda _i: waiter.decide_figure(url(), sizes.due)
            )
            figures[f"waiter{suffix}"] = value_figure(
                runs, "carts_per_s", "carts/s", due=sizes.due, turn=runs[-1]["turn"]
            )
        if f"sweep{suffix}" in selected:
            sizes_ = (sizes.sweep_open, sizes.million) if suffix else (sizes.sweep_open,)
            for n in sizes_:
                log(f"filling a database with {n:,} open carts")
                engine = waiter.filled(url(), n)
                try:
                    runs = repeat(
                        f"sweep{suffix} {n:,}",
                        opts.runs,
                        lambda _i, e=engine: waiter.sweep_figure(e),
                    )
                finally:
                    engine.dispose()
                figures[f"sweep{suffix}_{n}"] = value_figure(runs, "sweep_ms", "ms", open=n)
        wants_smtp = {f"deliver{suffix}", f"due_claimed{suffix}"} & set(selected)
        if wants_smtp:
            with sender.smtp_sink() as port:
                if f"deliver{suffix}" in selected:
                    runs = repeat(
                        f"deliver{suffix}",
                        opts.runs,
                        lambda i: sender.deliver_figure(url(), port, sizes.sends, tmp / f"o{i}"),
                    )
                    figures[f"deliver{suffix}"] = value_figure(
                        runs, "per_s", "emails/s", count=sizes.sends, lanes=sender.Providers.LANES
                    )
                if f"due_claimed{suffix}" in selected:
                    runs = repeat(
                        f"due_claimed{suffix}",
                        opts.runs,
                        lambda i: sender.latency_figure(
                            url(), port, sizes.due_carts, tmp / f"h{i}"
                        ),
                    )
                    figures[f"due_claimed{suffix}"] = {
                        "unit": "s",
                        "carts": sizes.due_carts,
                        "summary": {
                            q: summarize([float(r[q]) for r in runs]) for q in DUE_PERCENTILES
                        },
                        "verified": all(r["verified"] for r in runs),
                        "runs": runs,
                    }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure_memory(
    selected: list[str], opts: Options, sizes: Sizes, figures: dict[str, Any]
) -> None:
    """``serve`` at idle, and with ``sizes.million`` open carts; that database also gives the
    sweep at a million (filling it is the slow part, so it is filled once)."""
    if "memory" in selected:
        with memory.filled_server(0) as server:
            runs = repeat("memory idle", opts.runs, lambda _i: memory.resident(server))
        figures["memory_idle"] = value_figure(runs, "pss", "MiB", open=0)
    if not {"memory", "sweep"} & set(selected):
        return
    log(f"filling a database with {sizes.million:,} open carts")
    with memory.filled_server(sizes.million) as server:
        if "sweep" in selected:
            engine = make_engine(server.database_url)
            try:
                now = datetime.now(UTC)
                runs = repeat(
                    f"sweep {sizes.million:,}",
                    opts.runs,
                    lambda _i: waiter.sweep_figure(engine, now),
                )
            finally:
                engine.dispose()
            figures[f"sweep_{sizes.million}"] = value_figure(
                runs, "sweep_ms", "ms", open=sizes.million
            )
        if "memory" in selected:
            runs = repeat(
                f"memory {sizes.million:,} open", opts.runs, lambda _i: memory.resident(server)
            )
            figures["memory_million"] = value_figure(runs, "pss", "MiB", open=sizes.million)


# -- report ---------------------------------------------------------------------------------
def _num(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "∞" if isinstance(value, float) and math.isinf(value) else "–"
    return f"{value:,.{digits}f}"


def _spread(summary: dict[str, Any], digits: int = 0) -> str:
    return f"{_num(summary['min'], digits)}–{_num(summary['max'], digits)}"


def _verified(figure: dict[str, Any]) -> str:
    checked = [bool(r["verified"]) for r in figure["runs"] if "verified" in r]
    return f"{sum(checked)}/{len(checked)}" if checked else "–"  # nothing to check (a size)


def _cpu(figure: dict[str, Any]) -> str:
    return (
        f"CPU cores: server {_num(figure.get('median_server_cpu_cores'), 2)}, "
        f"load generator {_num(figure.get('median_client_cpu_cores'), 2)}, "
        f"other {_num(figure.get('median_other_cpu_cores'), 2)}, "
        f"stolen by the host {_num(figure.get('median_stolen_cpu_cores'), 2)}"
    )


def table(figures: dict[str, Any], opts: Options) -> list[str]:
    rows = [
        "| figure | unit | median | min–max | runs | verified | notes |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]

    def throughput(key: str, title: str, note: str) -> None:
        fig = figures.get(key)
        if fig:
            s = fig["summary"]
            rows.append(
                f"| {title} | {fig['unit']} | {_num(s['median'])} | {_spread(s)} | "
                f"{len(s['runs'])} | {_verified(fig)} | {note.format(**fig)} |"
            )

    def latency(key: str, title: str) -> None:
        fig = figures.get(key)
        if not fig:
            return
        rate = fig["achieved_offered_rate"]
        for q in PERCENTILES:
            s = fig["summary"][q]
            note = (
                f"scheduled {_num(fig['offered_rate'])}/s, sent {_num(rate['median'])}/s "
                f"(requests that waited for a free connection: "
                f"{fig['queued_for_a_connection']:,}, their wait counted; unanswered at the end: "
                f"{fig['abandoned']:,}); {_cpu(fig)}"
                if q == "p50"
                else ""
            )
            rows.append(
                f"| {title} {q} | ms | {_num(s['median'], 1)} | {_spread(s, 1)} | "
                f"{len(s['runs'])} | {_verified(fig) if q == 'p50' else ''} | {note} |"
            )

    http_note = "{connections} connections; " + "{cpu}"
    for key in ("ingest_http", "ingest_http_pg", "http_ceiling"):
        if key in figures:
            figures[key]["cpu"] = _cpu(figures[key])
    throughput("ingest_http", "HTTP ingest, SQLite", http_note)
    latency("latency_http", f"Ack latency @ {_num(opts.rate)}/s, SQLite,")
    latency("latency_http_half_capacity", "Ack latency @ ½ capacity, SQLite,")
    inproc_note = (
        "{median_statements_per_event} statements/event, {median_events_per_commit} "
        "events/commit, verify+parse {median_verify_parse_us_per_event} µs/event, "
        "write {median_write_us_per_event} µs/event"
    )
    throughput("inprocess", "In-process verify+parse+write, SQLite", inproc_note)
    throughput("inprocess_pg", "In-process verify+parse+write, PostgreSQL", inproc_note)
    throughput("ingest_http_pg", "HTTP ingest, PostgreSQL", http_note)
    throughput("http_ceiling", "HTTP ceiling: wrong signature → 401, no database", http_note)
    for key in ("ingest_http", "ingest_http_pg", "http_ceiling"):
        figures.get(key, {}).pop("cpu", None)
    for http, inproc, title in (
        ("ingest_http", "inprocess", "HTTP / in-process, SQLite"),
        ("ingest_http_pg", "inprocess_pg", "HTTP / in-process, PostgreSQL"),
    ):
        ratio = figures.get(f"ratio_{http}_to_{inproc}")
        if ratio is not None:
            rows.append(f"| {title} | ratio | {ratio:.2f} | | | | of the medians |")
    return rows + reminder_rows(figures)


def _value_row(figure: dict[str, Any], title: str, note: str, digits: int = 0) -> str:
    s = figure["summary"]
    return (
        f"| {title} | {figure['unit']} | {_num(s['median'], digits)} | {_spread(s, digits)} | "
        f"{len(s['runs'])} | {_verified(figure)} | {note} |"
    )


def reminder_rows(figures: dict[str, Any]) -> list[str]:
    """The waiter, the sender, due → claimed, memory and the sweep."""
    rows = []
    engines = (("", "SQLite"), ("_pg", "PostgreSQL"))
    for suffix, db in engines:
        fig = figures.get(f"waiter{suffix}")
        if fig:
            note = f"{fig['due']:,} due carts decided and their reminders queued, {fig['turn']}"
            rows.append(_value_row(fig, f"Waiter: decided and enqueued, {db}", note))
    if fig := figures.get("compose"):
        rows.append(
            _value_row(fig, "Compose (HTML + text, to bytes)", f"{fig['count']:,} two-item emails")
        )
    for suffix, db in engines:
        if fig := figures.get(f"deliver{suffix}"):
            note = (
                f"{fig['count']:,} due sends: claim, gates, compose, SMTP to a local server "
                f"({fig['lanes']} connections), record"
            )
            rows.append(_value_row(fig, f"Delivered, {db}", note))
    for suffix, db in engines:
        fig = figures.get(f"due_claimed{suffix}")
        if not fig:
            continue
        for q in DUE_PERCENTILES:
            what, pct = q.split("_")
            title = f"Due → {'claimed' if what == 'claim' else 'accepted by SMTP'}, {db}, {pct}"
            one = {**fig, "summary": fig["summary"][q]}
            note = (
                f"{fig['carts']:,} carts due at random over 20 s; loops on the real clock, "
                "a pass at most 1 s after the last"
                if q == "claim_p50"
                else ""
            )
            rows.append(_value_row(one, title, note, 2))
    for key in ("memory_idle", "memory_million"):
        if fig := figures.get(key):
            title = f"with {fig['open']:,} open carts" if fig["open"] else "idle, empty database"
            rss = summarize([float(r["rss"]) for r in fig["runs"]])["median"]
            procs = fig["runs"][0]["processes"]
            note = (
                f"PSS of `cartnudge serve`'s {procs:.0f} processes (web, loops, ingest writer) "
                f"after {memory.SETTLE_S:.0f} s of loop passes and a /metrics scrape; "
                f"RSS {_num(rss)}"
            )
            rows.append(_value_row(fig, f"Memory, serve {title}", note))
    sweeps = sorted(
        (int(k.rsplit("_", 1)[1]), k) for k in figures if k.startswith("sweep") and k[-1].isdigit()
    )
    for n, key in sorted(sweeps, key=lambda t: (t[1].startswith("sweep_pg"), t[0])):
        db = "PostgreSQL" if key.startswith("sweep_pg") else "SQLite"
        note = f"{n:,} open carts, none due; mean of {waiter.SWEEP_PASSES} passes"
        rows.append(_value_row(figures[key], f"Sweep, nothing due, {db}, {n:,} open", note, 3))
    return rows


def targets(figures: dict[str, Any], opts: Options) -> list[str]:
    lines = []
    http = figures.get("ingest_http", {}).get("summary", {}).get("median")
    if http is not None:
        met = "met" if http >= TARGET_HTTP_EVENTS_S else "**missed**"
        lines.append(
            f"- ≥ {TARGET_HTTP_EVENTS_S:,.0f} events/s through HTTP on SQLite: "
            f"{_num(http)} events/s (median) — {met}"
        )
    lat = figures.get("latency_http")
    if lat is not None:
        p99 = lat["summary"]["p99"]["median"]
        met = "met" if p99 is not None and p99 <= TARGET_P99_MS else "**missed**"
        if opts.rate != 1000:
            met += f" (measured at {_num(opts.rate)}/s, not 1,000/s)"
        lines.append(
            f"- p99 ack ≤ {TARGET_P99_MS:.0f} ms at 1,000 events/s: {_num(p99, 1)} ms — {met}"
        )
    for key, target, unit, what in (
        ("waiter", TARGET_CARTS_S, "carts/s", "decided on SQLite"),
        ("waiter_pg", TARGET_CARTS_S, "carts/s", "decided on PostgreSQL"),
        ("deliver", TARGET_EMAILS_S, "emails/s", "delivered on SQLite"),
        ("deliver_pg", TARGET_EMAILS_S, "emails/s", "delivered on PostgreSQL"),
        ("ingest_http_pg", TARGET_PG_HTTP_EVENTS_S, "events/s", "through HTTP on PostgreSQL"),
    ):
        value = figures.get(key, {}).get("summary", {}).get("median")
        if value is not None:
            met = "met" if value >= target else "**missed**"
            lines.append(f"- ≥ {target:,.0f} {unit} {what}: {_num(value)} {unit} — {met}")
    ratio = figures.get("ratio_ingest_http_pg_to_inprocess_pg")
    if isinstance(ratio, float | int):
        met = "met" if ratio >= TARGET_PG_HTTP_RATIO else "**missed**"
        lines.append(
            f"- HTTP ≥ {TARGET_PG_HTTP_RATIO:.0%} of in-process on PostgreSQL: {ratio:.2f} — {met}"
        )
    for key, what in (("memory_idle", "idle"), ("memory_million", "with 1,000,000 open carts")):
        value = figures.get(key, {}).get("summary", {}).get("median")
        if value is not None:
            met = "met" if value <= TARGET_SERVE_PSS_MIB else "**missed**"
            limit = f"{TARGET_SERVE_PSS_MIB:.0f} MiB PSS {what}"
            lines.append(f"- `serve` ≤ {limit}: {_num(value, 1)} MiB — {met}")
    return lines


def markdown(report: dict[str, Any], opts: Options) -> str:
    m = report["machine"]
    figures = report["figures"]
    pg = figures.get("postgres", {})
    lines = [
        f"# cartnudge benchmarks — {report['finished_at']}",
        "",
        f"Command: `{report['command']}` ({report['duration_s']:.0f} s). Median and min–max "
        f"over {opts.runs} runs; each HTTP run starts a new `cartnudge serve` on an empty "
        f"database (`cartnudge serve --workers {opts.workers}`). *verified*: runs where the "
        "rows in `inbox_events` equal the 2xx answers.",
        "",
        *table(figures, opts),
        "",
        *peers_section(report),
        "Targets (from the intake and timing issues):",
        "",
        *targets(figures, opts),
        "",
        "Machine: "
        f"{m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, {m['os']}; {m['python']}; "
        f"SQLite {m['sqlite']}; {m['postgresql'] or 'PostgreSQL not found'}"
        + (
            f" (server {pg['version']}, fsync={pg['settings']['fsync']}, "
            f"synchronous_commit={pg['settings']['synchronous_commit']})"
            if pg
            else ""
        )
        + f"; databases on {m['database_fs']} ({m['database_dir']}), "
        f"fsync {m['fsync_ms']} ms; load average at start {m['load_average_at_start']}; "
        f"CPU reference (`sum(range(10**6))`, best of 5) {m['cpu_reference_ms']} ms.",
        "",
        "Packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v) + ".",
        "",
        (
            f"Code: commit {m['code']['commit']}, {m['code']['uncommitted_src_files']} file(s) "
            "under src/ changed since."
            if m["code"]["commit"]
            else f"Code: the package at {m['code']['package']}."
        ),
        "",
    ]
    return "\n".join(lines)


# -- entry ----------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated figures to run (default: all): {', '.join(FIGURES)}",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (default 3)")
    parser.add_argument("--http-duration", type=float, default=10.0, help="s per throughput run")
    parser.add_argument("--latency-duration", type=float, default=20.0, help="s per latency run")
    parser.add_argument("--rate", type=float, default=1000.0, help="offered events/s for latency")
    parser.add_argument("--connections", type=int, default=64, help="concurrent requests")
    parser.add_argument("--inprocess-duration", type=float, default=8.0, help="s per run")
    parser.add_argument("--batch-max", type=int, default=256, help="ingest writer batch limit")
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes (cartnudge serve --workers)"
    )
    parser.add_argument("--sends", type=int, default=Sizes.sends, help="emails per compose/deliver")
    parser.add_argument("--due", type=int, default=Sizes.due, help="due carts per waiter run")
    parser.add_argument("--million", type=int, default=Sizes.million, help="open carts held")
    parser.add_argument("--peers", type=int, default=Sizes.peers, help="reminders per peer")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL figures")
    parser.add_argument("--out", type=Path, default=None, help="report path without suffix")
    args = parser.parse_args(argv)
    unknown = {f for f in args.only.split(",") if f} - set(FIGURES)
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(sorted(unknown))}; choose from {FIGURES}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    selected = [f for f in args.only.split(",") if f] or list(FIGURES)
    opts = Options(
        runs=args.runs,
        http_duration_s=args.http_duration,
        connections=args.connections,
        rate=args.rate,
        latency_duration_s=args.latency_duration,
        inprocess_duration_s=args.inprocess_duration,
        batch_max=args.batch_max,
        workers=args.workers,
    )
    sizes = Sizes(sends=args.sends, due=args.due, million=args.million, peers=args.peers)
    out = args.out or RESULTS / ("only" if args.only else "latest")
    started = time.perf_counter()
    log(f"figures: {', '.join(selected)}; {opts.runs} runs each")
    report: dict[str, Any] = {
        "command": " ".join(["python -m bench.run", *argv]),
        "machine": machine.describe(),
        "options": opts.__dict__,
        "sizes": sizes.__dict__,
    }
    report["figures"] = measure(selected, opts, sizes, with_postgres=not args.no_postgres)
    report["finished_at"] = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    report["duration_s"] = round(time.perf_counter() - started, 1)
    text = markdown(report, opts)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(text)
    print(text)
    log(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    verified = all(
        fig.get("verified", True) for fig in report["figures"].values() if isinstance(fig, dict)
    )
    if not verified:
        log("VERIFICATION FAILED: a run's own check did not hold (see `verified` in the JSON)")
    return 0 if verified else 1


if __name__ == "__main__":
    sys.exit(main())
