"""`python -m bench.chaos`: run the fault suite, print its table, write it to
bench/CHAOS.md, exit 1 when an invariant fails (2 when the stack would not start).

SIGTERM or Ctrl-C stops the run (exit 128 + the signal's number) and every
process it started with it, in order (a second signal: at once), as does any
error: no Temporal server, worker, gateway, stand-in or PostgreSQL of the
suite outlives it."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from bench.chaos.invariants import check_all
from bench.chaos.report import coverage, render, write
from bench.chaos.scenario import Options, run_scenario
from bench.chaos.services import STARTED
from bench.chaos.stack import start_stack

QUICK = Options(
    rounds=4,
    worker_kills=8,
    kill_gap_s=(2.0, 6.0),
    postgres_outage_s=8.0,
    slack_outage_s=8.0,
    model_outage_s=8.0,
    error_answers=4,
    budget_s=420.0,
)


def parse(argv: list[str]) -> tuple[Options, argparse.Namespace]:
    d = Options()
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    p.add_argument(
        "--quick",
        action="store_true",
        help="Development run: 4 rounds, 8 worker kills, 8 s outages (other flags still apply).",
    )
    p.add_argument(
        "--rounds", type=int, help=f"Concurrent rounds, in two waves (default {d.rounds})."
    )
    p.add_argument(
        "--seed",
        type=int,
        help=f"Seed of the worker kills' moments and victims (default {d.seed}).",
    )
    p.add_argument(
        "--worker-kills", type=int, help=f"Worker SIGKILLs over the run (default {d.worker_kills})."
    )
    p.add_argument(
        "--postgres-outage",
        type=float,
        metavar="S",
        help=f"Seconds PostgreSQL is stopped (default {d.postgres_outage_s:g}).",
    )
    p.add_argument(
        "--slack-outage",
        type=float,
        metavar="S",
        help=f"Seconds the Slack stand-in is down (default {d.slack_outage_s:g}).",
    )
    p.add_argument(
        "--model-outage",
        type=float,
        metavar="S",
        help=f"Seconds the model stand-in is down (default {d.model_outage_s:g}).",
    )
    p.add_argument(
        "--error-answers",
        type=int,
        help=f"429/500 answers each stand-in gives after its outage (default {d.error_answers}).",
    )
    p.add_argument(
        "--continue-as-new-events",
        type=int,
        help="History length at which Temporal suggests continuing as new "
        f"(default {d.continue_as_new_events}).",
    )
    p.add_argument(
        "--budget",
        type=float,
        metavar="S",
        help=f"Seconds for the scenes and the final wait, after start-up (default {d.budget_s:g}).",
    )
    p.add_argument(
        "--title", default="Latest run", help="Heading of this run's table in the results file."
    )
    p.add_argument(
        "--results",
        type=Path,
        default=Path("bench/CHAOS.md"),
        help="Where the table goes (default bench/CHAOS.md); '-' for nowhere.",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="Keep the run's directory (logs, databases) instead of removing it.",
    )
    args = p.parse_args(argv)
    options = QUICK if args.quick else d
    overrides = {
        "rounds": args.rounds,
        "seed": args.seed,
        "worker_kills": args.worker_kills,
        "postgres_outage_s": args.postgres_outage,
        "slack_outage_s": args.slack_outage,
        "model_outage_s": args.model_outage,
        "error_answers": args.error_answers,
        "continue_as_new_events": args.continue_as_new_events,
        "budget_s": args.budget,
    }
    options = replace(options, **{k: v for k, v in overrides.items() if v is not None})
    if options.rounds < 3:
        p.error("--rounds must be at least 3 (three wave-1 rounds meet different faults)")
    if min(options.postgres_outage_s, options.slack_outage_s, options.model_outage_s) < 0:
        p.error("outages are seconds, 0 or more")
    return options, args


async def main(options: Options, args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="amend-chaos-"))
    print(f"chaos: run directory {workdir} (logs of every process)", flush=True)
    try:
        stack = await start_stack(workdir, options.continue_as_new_events)
    except Exception as error:
        print(f"chaos: the stack did not start: {error}", file=sys.stderr)
        return 2
    try:
        outcome = await run_scenario(stack, options)
    finally:
        await stack.stop()
    checks = [*check_all(outcome.facts), coverage(outcome, options)]
    table = render(outcome, checks, options, args.title)
    print()
    print(table)
    if str(args.results) != "-":
        write(args.results, table)
        print(f"chaos: table written to {args.results}")
    failed = [c.name for c in checks if not c.ok]
    if not args.keep and not failed:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"chaos: logs kept in {workdir}")
    if failed:
        print(f"chaos: FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    print("chaos: every invariant held")
    return 0


async def stopping_everything(run: Callable[[], Awaitable[int]]) -> int:
    """`run`'s exit status; SIGTERM or SIGINT cancels it (128 + the signal).

    However it ends, every process the suite started is stopped before this
    returns: `run` stops its stack on the way out, and whatever that missed
    (a process started while it was being stopped, a stop cut short) is
    killed from `STARTED`'s books.
    """
    task = asyncio.current_task()
    assert task is not None
    received: list[signal.Signals] = []
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        # The first stops each process in order; another cuts that short, and
        # what is left is killed at once.
        again = "again: killing what is left" if received else "stopping every process it started"
        print(f"chaos: {sig.name}: {again}", file=sys.stderr)
        received.append(sig)
        task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await run()
    except asyncio.CancelledError:
        if not received:
            raise
        return 128 + received[0].value
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        left = STARTED.stop_everything()
        if left:
            print(f"chaos: killed what was left: {', '.join(left)}", file=sys.stderr)


if __name__ == "__main__":
    opts, arguments = parse(sys.argv[1:])
    sys.exit(asyncio.run(stopping_everything(lambda: main(opts, arguments))))
