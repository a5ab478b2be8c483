"""The `amend` console script ends cleanly after talking to Temporal: its exit
code is the command's, its output is all there, and the Temporal client's
threads cannot abort the interpreter's finalisation (`Fatal Python error:
PyGILState_Release`, exit 134), because the script skips it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

AMEND = Path(sys.executable).parent / "amend"
RUNS = 5


async def test_amend_exits_with_its_commands_code_every_time_after_using_temporal(
    dev_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AMEND_")},
        "AMEND_TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
        "AMEND_TEMPORAL_TASK_QUEUE": "exit-test",
        "AMEND_DATA_DIR": str(tmp_path),
        "USER": "ops-oliver",
    }
    for _ in range(RUNS):
        process = await asyncio.create_subprocess_exec(
            str(AMEND),
            "round",
            "cancel",
            "no-such-round",
            "--reason",
            "testing the exit",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        said = (out + err).decode()
        assert "Fatal Python error" not in said
        assert process.returncode == 1, said
        assert "no-such-round" in said  # the command's own answer came out before the exit
