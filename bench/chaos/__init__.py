"""`make chaos`: the fault suite. The stack runs as separate processes
(Temporal dev server, PostgreSQL, two `amend worker`, `amend gateway`, the
Slack and model stand-ins); rounds are driven by simulated reviewers clicking
as Slack does while faults are injected; the invariants are checked on what
the ledger, Slack and the model server hold at the end. See README (Testing).
"""
