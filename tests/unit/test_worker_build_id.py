"""The build id a worker reports to Temporal is a digest of amend's code, the
same in every process that runs that code, whatever else it has imported:
Temporal's default digested every loaded module (0.24 s at each worker start,
issue 14) and so differed between `amend worker` and `amend dev`."""

from __future__ import annotations

import subprocess
import sys


def _build_id(first: str) -> str:
    code = f"{first}\nfrom worker.runtime import code_build_id\nprint(code_build_id())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_the_build_id_is_the_same_whatever_the_process_imported_first() -> None:
    alone = _build_id("")
    assert alone == _build_id("import worker.stack, worker.demo")
    assert len(alone) == 32 and int(alone, 16) >= 0
