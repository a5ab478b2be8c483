"""`amend dev` as an operator runs it, in a process of its own: one stack per
data directory (`amend demo` beside it is refused and touches nothing), a
clean stop on Ctrl-C, and one line naming the Temporal server or PostgreSQL
that died under it before it stops everything else."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from standins.serving import free_port
from tests.conftest import SMALL_EVAL_SET, eventually
from worker.database import running_embedded_url

AMEND = Path(sys.executable).parent / "amend"
READY_S = 120


@dataclass
class DevProcess:
    process: asyncio.subprocess.Process
    env: dict[str, str]
    data_dir: Path
    log: Path

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.env['AMEND_GATEWAY_PORT']}"

    def output(self) -> str:
        return self.log.read_text()

    async def exited(self, wait_s: float = 60) -> int:
        return await asyncio.wait_for(self.process.wait(), wait_s)

    def temporal_server(self) -> psutil.Process:
        """The Temporal dev server this `amend dev` started (its child)."""
        [found] = [
            child
            for child in psutil.Process(self.process.pid).children()
            if "start-dev" in child.cmdline()
        ]
        return found

    def postgres_pid(self) -> int:
        return int((self.data_dir / "postgres" / "postmaster.pid").read_text().split()[0])


def dev_env(data_dir: Path) -> dict[str, str]:
    """Settings for a dev stack of its own: its data directory and free ports."""
    return os.environ | {
        "AMEND_DATA_DIR": str(data_dir),
        "AMEND_DATABASE_URL": "",
        "AMEND_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "AMEND_TEMPORAL_UI_PORT": str(free_port()),
        "AMEND_GATEWAY_PORT": str(free_port()),
        "AMEND_STAND_IN_PORT_MODEL": str(free_port()),
        "AMEND_STAND_IN_PORT_SLACK": str(free_port()),
        "COLUMNS": "200",
        # The demo's evaluation on the tests' slice of the set, not the few hundred prompts.
        "AMEND_EVAL_PROMPT_FILE": str(SMALL_EVAL_SET),
    }


@asynccontextmanager
async def amend_dev(data_dir: Path, env: dict[str, str] | None = None) -> AsyncIterator[DevProcess]:
    """`amend dev` started, and answering on its gateway; stopped (killed) on exit if still up."""
    env = env or dev_env(data_dir)
    env.pop("AMEND_DATABASE_URL")  # unset: the embedded database
    log = data_dir.parent / f"{data_dir.name}-dev.log"
    with log.open("w") as out:
        process = await asyncio.create_subprocess_exec(
            str(AMEND), "dev", env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=data_dir.parent,
        )  # fmt: skip
    dev = DevProcess(process, env, data_dir, log)
    try:

        async def ready() -> bool:
            if process.returncode is not None:
                raise AssertionError(f"amend dev exited early:\n{dev.output()}")
            try:
                async with httpx.AsyncClient(timeout=2) as http:
                    return (await http.get(f"{dev.gateway}/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(ready, "amend dev to answer", READY_S)
        yield dev
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def amend(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Another `amend` command beside the running stack, as from a second shell."""
    done = await asyncio.create_subprocess_exec(
        str(AMEND), *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(done.communicate(), 120)
    assert done.returncode is not None
    return done.returncode, out.decode()


def no_traceback(text: str) -> bool:
    """No traceback, and no exception line of one (rich prints its own frame boxes)."""
    raised = re.search(r"^(\w+\.)*\w+(Error|Exception|Interrupt): ", text, re.MULTILINE)
    return "Traceback" not in text and raised is None


async def test_a_demo_beside_a_dev_stack_is_refused_and_ctrl_c_then_stops_the_stack_cleanly(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    async with amend_dev(data) as dev:
        pid_before = dev.postgres_pid()
        code, out = await amend(dev.env, "demo")
        assert code == 2, out
        assert len(out.strip().splitlines()) == 1, out
        assert f"the data directory {data.resolve()} is in use by `amend dev`" in out
        assert "AMEND_DATA_DIR" in out
        # The running stack is untouched: same PostgreSQL, gateway and ledger answering.
        assert dev.postgres_pid() == pid_before
        assert running_embedded_url(data) is not None
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{dev.gateway}/healthz")).status_code == 200
        code, out = await amend(dev.env, "migrate")  # uses the running stack's database
        assert code == 0 and "applied: nothing (up to date)" in out, out
        code, out = await amend(dev.env, "dev")
        assert code == 2 and "is in use by `amend dev`" in out, out

        # Ctrl-C twice: one stop, in order, and no traceback.
        dev.process.send_signal(signal.SIGINT)
        await asyncio.sleep(0.2)
        dev.process.send_signal(signal.SIGINT)
        assert await dev.exited() == 0, dev.output()
    output = dev.output()
    assert "stopping…" in output and output.rstrip().endswith("stopped"), output
    assert no_traceback(output), output
    assert running_embedded_url(data) is None  # its PostgreSQL stopped with it


@pytest.mark.parametrize("dies", ["PostgreSQL", "Temporal"])
async def test_a_server_that_dies_under_the_dev_stack_is_named_and_everything_stops(
    tmp_path: Path, dies: str
) -> None:
    data = tmp_path / "data"
    async with amend_dev(data) as dev:
        temporal = dev.temporal_server()
        if dies == "PostgreSQL":
            os.kill(dev.postgres_pid(), signal.SIGKILL)
        else:
            temporal.kill()
        assert await dev.exited() == 1, dev.output()
    output = dev.output()
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    if dies == "PostgreSQL":
        assert (
            f"PostgreSQL (the embedded server in {(data / 'postgres').resolve()}) stopped"
            in errors[0]
        )
    else:
        assert "the Temporal dev server stopped (exit code -9)" in errors[0]
        assert str(data / "temporal.log") in errors[0]
    assert errors[0].endswith("stopping everything")
    assert no_traceback(output), output
    # Everything else stopped with it.
    assert not temporal.is_running() or temporal.status() == psutil.STATUS_ZOMBIE
    assert running_embedded_url(data) is None
