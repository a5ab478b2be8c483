"""RecordRefusalWorkflow: a refused decision kept until the ledger can take it.

Temporal's history never sees a refused update, so the `decision_attempts`
row is a refusal's only trace. When the gateway cannot write it (PostgreSQL
down), it starts this workflow, id `refusal-<the interaction's update id>` so
a retried click starts it once, and Temporal holds the refusal durably,
through gateway and worker restarts, while the worker retries the write with
backoff for as long as the database is away.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from constitution.contracts import DecisionAttemptInput
    from workflows.activities import LedgerActivities

# Retried without limit: the write is worth waiting for however long the outage.
UNTIL_WRITTEN = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
)


def refusal_workflow_id(update_id: str) -> str:
    """One workflow per refused interaction, however often Slack retries it."""
    return f"refusal-{update_id}"


@workflow.defn
class RecordRefusalWorkflow:
    """Write one refused decision to the ledger, waiting out an outage."""

    @workflow.run
    async def run(self, attempt: DecisionAttemptInput) -> None:
        """Ends once the row is written; until then the worker keeps trying."""
        await workflow.execute_activity_method(
            LedgerActivities.record_decision_attempt,
            attempt,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=UNTIL_WRITTEN,
        )
