"""The exit codes of `amend`, apart from how it prints, so that `amend` can
name them without importing its views (and the ledger's and constitution's
types they draw)."""

from __future__ import annotations

# 0 success, 1 the operation failed, 2 bad arguments or input (typer's own
# usage errors are 2 as well), 3 a service could not be reached.
EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3
