"""The intake benchmark: ``make bench`` or ``python -m bench.run [--only FIGURE,…]``.

Writes bench/results/latest.md and latest.json (a run with --only writes
bench/results/only.md and only.json instead, so the full table is not overwritten).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import machine
from bench.ingest import (
    FIGURES,
    Options,
    PostgresDatabases,
    http_run,
    inprocess_run,
    inprocess_sqlite,
    summarize,
)

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_HTTP_EVENTS_S = 3000.0  # the issue: ≥ 3,000 events/s through HTTP on SQLite
TARGET_P99_MS = 50.0  # the issue: p99 ack ≤ 50 ms at 1,000 events/s offered
PERCENTILES = ("p50", "p95", "p99", "p99.9", "max")


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
        elif result.get("events_per_s") or "answers_per_s" not in result:
            headline = f"{result['events_per_s']} events/s"
        else:
            headline = f"{result['answers_per_s']} answers/s"
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


def measure(selected: list[str], opts: Options, with_postgres: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {}
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
    wants_pg = [f for f in ("inprocess_pg", "ingest_http_pg") if f in selected]
    if wants_pg and not with_postgres:
        log(f"skipping {', '.join(wants_pg)} (--no-postgres)")
    if wants_pg and with_postgres:
        log("starting a private PostgreSQL (durable: fsync on)")
        with PostgresDatabases() as pg:
            figures["postgres"] = {"version": pg.version(), "settings": pg.settings()}
            if "inprocess_pg" in selected:
                runs = repeat("inprocess_pg", opts.runs, lambda _i: inprocess_run(pg.fresh(), opts))
                figures["inprocess_pg"] = throughput_figure(runs, window=opts.connections)
            if "ingest_http_pg" in selected:
                runs = repeat(
                    "ingest_http_pg", opts.runs, lambda _i: http_run("closed", opts, pg.fresh())
                )
                figures["ingest_http_pg"] = throughput_figure(runs, connections=opts.connections)
    for http, inproc in (("ingest_http", "inprocess"), ("ingest_http_pg", "inprocess_pg")):
        a = figures.get(http, {}).get("summary", {}).get("median")
        b = figures.get(inproc, {}).get("summary", {}).get("median")
        if a and b:
            figures[f"ratio_{http}_to_{inproc}"] = round(a / b, 3)
    return figures


# -- report ---------------------------------------------------------------------------------
def _num(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "∞" if isinstance(value, float) and math.isinf(value) else "–"
    return f"{value:,.{digits}f}"


def _spread(summary: dict[str, Any], digits: int = 0) -> str:
    return f"{_num(summary['min'], digits)}–{_num(summary['max'], digits)}"


def _verified(figure: dict[str, Any]) -> str:
    ok = sum(1 for r in figure["runs"] if r["verified"])
    return f"{ok}/{len(figure['runs'])}"


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
    return lines


def markdown(report: dict[str, Any], opts: Options) -> str:
    m = report["machine"]
    figures = report["figures"]
    pg = figures.get("postgres", {})
    lines = [
        f"# Intake benchmark — {report['finished_at']}",
        "",
        f"Command: `{report['command']}` ({report['duration_s']:.0f} s). Median and min–max "
        f"over {opts.runs} runs; each HTTP run starts a new `cartnudge serve` on an empty "
        f"database (`cartnudge serve --workers {opts.workers}`). *verified*: runs where the "
        "rows in `inbox_events` equal the 2xx answers.",
        "",
        *table(figures, opts),
        "",
        "Targets (from the issue):",
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
        f"fsync {m['fsync_ms']} ms; load average at start {m['load_average_at_start']}.",
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
    out = args.out or RESULTS / ("only" if args.only else "latest")
    started = time.perf_counter()
    log(f"figures: {', '.join(selected)}; {opts.runs} runs each")
    report: dict[str, Any] = {
        "command": " ".join(["python -m bench.run", *argv]),
        "machine": machine.describe(),
        "options": opts.__dict__,
    }
    report["figures"] = measure(selected, opts, with_postgres=not args.no_postgres)
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
        log("VERIFICATION FAILED: acknowledged and stored counts differ (see the JSON)")
    return 0 if verified else 1


if __name__ == "__main__":
    sys.exit(main())
