"""The fault suite leaves nothing running: every process it starts leads a
process group of its own, kept in `STARTED`'s books, and however the suite
ends (SIGTERM, Ctrl-C, an exception) each group is stopped, with whatever its
leader started in it.

Stand-in processes (`sh` and `sleep`) play the services: the bookkeeping is
under test here, not the services (`make chaos` runs those).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.chaos.services import STARTED, Service

# A leader that starts a child of its own, as a server may.
FAMILY = ["sh", "-c", "sleep 600 & exec sleep 600"]
REPO = Path(__file__).resolve().parents[2]


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent, process group) of a live process; None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    state, parent, group = stat.rsplit(")", 1)[1].split()[:3]
    return state, int(parent), int(group)


def members(group: int) -> list[int]:
    """The processes of a group that are running (a zombie has stopped)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            state, _, pgid = stat
            if pgid == group and state != "Z":
                found.append(int(entry.name))
    return found


def children(pid: int) -> list[int]:
    return [
        int(e.name)
        for e in Path("/proc").iterdir()
        if e.name.isdigit() and (stat := _stat(int(e.name))) is not None and stat[1] == pid
    ]


async def always_ready() -> bool:
    return True


async def gone(groups: list[int], within_s: float = 10) -> list[int]:
    """The members of `groups` still running after up to `within_s`."""
    deadline = time.monotonic() + within_s
    left = [p for g in groups for p in members(g)]
    while left and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        left = [p for g in groups for p in members(g)]
    return left


async def within(seconds: float, check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"no {what} in {seconds:g} s"
        await asyncio.sleep(0.05)


async def test_stopping_everything_kills_each_group_with_what_its_leader_started(
    tmp_path: Path,
) -> None:
    service = Service("family", FAMILY, tmp_path / "family.log", always_ready)
    await service.up()
    try:
        await within(10, lambda: service.pid is not None, "process")
        group = service.pid
        assert group is not None and group in STARTED.groups
        await within(10, lambda: len(members(group)) == 2, "leader and child")

        service.wanted_up = False  # its supervisor is not to start it again
        stopped = STARTED.stop_everything()

        assert stopped == [f"process group {group}"]
        assert await gone([group]) == []
        assert STARTED.groups == set()
    finally:
        await service.down(within_s=5)


SUITE = """
import asyncio, sys
from pathlib import Path
from bench.chaos.__main__ import stopping_everything
from bench.chaos.services import Service

async def ready() -> bool:
    return True

async def run() -> int:
    for n in range(3):
        await Service(f"s{{n}}", {family!r}, Path({logs!r}) / f"s{{n}}.log", ready).up()
    print("up", flush=True)
    await asyncio.Event().wait()
    return 0

sys.exit(asyncio.run(stopping_everything(run)))
"""


async def _suite_signalled(tmp_path: Path, sig: signal.Signals) -> tuple[int, list[int]]:
    """Run a suite of three services, send it `sig` once they are up: its exit
    status, and the members of its services' groups still running after."""
    suite = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SUITE.format(family=FAMILY, logs=str(tmp_path)),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    assert suite.stdout is not None
    try:
        assert await asyncio.wait_for(suite.stdout.readline(), 60) == b"up\n"
        await within(10, lambda: len(children(suite.pid)) == 3, "three services")
        groups = children(suite.pid)
        await within(10, lambda: all(len(members(g)) == 2 for g in groups), "their children")
        suite.send_signal(sig)
        status = await asyncio.wait_for(suite.wait(), 20)
        return status, await gone(groups)
    finally:
        if suite.returncode is None:
            suite.kill()
            await suite.wait()


async def test_sigterm_stops_the_suite_and_every_process_it_started(tmp_path: Path) -> None:
    status, left = await _suite_signalled(tmp_path, signal.SIGTERM)
    assert status == 128 + signal.SIGTERM
    assert left == []


async def test_ctrl_c_stops_the_suite_and_every_process_it_started(tmp_path: Path) -> None:
    status, left = await _suite_signalled(tmp_path, signal.SIGINT)
    assert status == 128 + signal.SIGINT
    assert left == []
