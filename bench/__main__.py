"""`make bench`: run every `bench/bench_*.py` on the embedded stack, print one
table and write it to bench/RESULTS.md and bench/results.json.

    python -m bench                 # everything
    python -m bench ledger rounds   # only bench_ledger.py and bench_rounds.py
    python -m bench --list          # what there is

A benchmark that fails is reported in the table as failed and the run goes on,
so one broken figure never hides the others; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import platform
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from rich.console import Console
from rich.table import Table

from bench.harness import BenchEnv, Figure, bench_env

HERE = Path(__file__).resolve().parent
Benchmark = Callable[[BenchEnv], Awaitable[list[Figure]]]


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def load(name: str) -> Benchmark:
    module = importlib.import_module(f"bench.bench_{name}")
    return cast(Benchmark, module.run)


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _met(figure: Figure) -> str:
    return {True: "yes", False: "NO", None: "-"}[figure.met]


def render_markdown(
    figures: list[Figure], failures: dict[str, str], details: dict[str, str], took: dict[str, float]
) -> str:
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python -m bench`); do not edit by hand. Each figure",
        "is compared with a floor measured in the same run on the same machine;",
        "ratio = value / floor. Timings are medians (p50) and p99 over repeated runs.",
        "",
        "## Machine",
        "",
        *[f"- {key}: {value}" for key, value in details.items()],
        "",
        "## Figures",
        "",
        "| figure | value | unit | floor | ratio | target | met |",
        "| --- | ---: | --- | ---: | ---: | --- | --- |",
    ]
    for f in figures:
        floor = _fmt(f.floor) + (f" ({f.floor_name})" if f.floor_name else "")
        lines.append(
            f"| {f.name} | {_fmt(f.value)} | {f.unit} | {floor} | {_fmt(f.ratio)} "
            f"| {f.target or '-'} | {_met(f)} |"
        )
    notes = [f for f in figures if f.note]
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- **{f.name}**: {f.note}" for f in notes]
    missed = [f for f in figures if f.met is False]
    lines += ["", "## Targets missed", ""]
    lines += [f"- **{f.name}**: {f.note or 'no reason recorded'}" for f in missed] or ["- none"]
    if failures:
        lines += ["", "## Benchmarks that failed", ""]
        lines += [f"- `{name}`: {error}" for name, error in failures.items()]
    lines += ["", "## Time per benchmark", ""]
    lines += [f"- {name}: {seconds:.0f} s" for name, seconds in took.items()]
    return "\n".join(lines) + "\n"


def print_table(console: Console, figures: list[Figure]) -> None:
    table = Table(title="amend benchmarks")
    for column in ("figure", "value", "unit", "floor", "ratio", "target", "met"):
        table.add_column(
            column, justify="right" if column in ("value", "floor", "ratio") else "left"
        )
    for f in figures:
        table.add_row(
            f.name,
            _fmt(f.value),
            f.unit,
            _fmt(f.floor),
            _fmt(f.ratio),
            str(f.target or "-"),
            _met(f),
        )
    console.print(table)


async def run_all(
    names: list[str], console: Console
) -> tuple[list[Figure], dict[str, str], dict[str, float]]:
    figures: list[Figure] = []
    failures: dict[str, str] = {}
    took: dict[str, float] = {}
    async with bench_env() as env:
        for name in names:
            console.print(f"[bold]bench {name}[/bold] ...")
            started = time.monotonic()
            try:
                got = await load(name)(env)
            except Exception as error:  # one broken benchmark must not hide the rest
                failures[name] = f"{type(error).__name__}: {error}"
                console.print(f"[red]bench {name} failed[/red]\n{traceback.format_exc()}")
                got = []
            took[name] = time.monotonic() - started
            for figure in got:
                console.print(
                    f"  {figure.name}: {_fmt(figure.value)} {figure.unit}"
                    + (
                        f" (floor {_fmt(figure.floor)}, ratio {_fmt(figure.ratio)})"
                        if figure.floor
                        else ""
                    )
                )
            figures.extend(got)
            console.print(f"  done in {took[name]:.0f} s")
    return figures, failures, took


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--out", type=Path, default=HERE, help="folder for RESULTS.md and results.json"
    )
    args = parser.parse_args(argv)
    names = available()
    if args.list:
        print("\n".join(names))
        return 0
    unknown = sorted(set(args.names) - set(names))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(names)}")
    selected = args.names or names
    logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGTERM, _interrupt)  # stop the servers it started, as on Ctrl-C
    console = Console()
    started = time.monotonic()
    figures, failures, took = asyncio.run(run_all(selected, console))
    details = machine() | {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "benchmarks": ", ".join(selected),
        "total time": f"{time.monotonic() - started:.0f} s",
    }
    print_table(console, figures)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "RESULTS.md").write_text(render_markdown(figures, failures, details, took))
    (args.out / "results.json").write_text(
        json.dumps([f.as_json() for f in figures], indent=2) + "\n"
    )
    console.print(f"wrote {args.out / 'RESULTS.md'} and {args.out / 'results.json'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
