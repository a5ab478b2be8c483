"""Which failed updates are the round's answer and which are Temporal's: a
click refused by the round is recorded and told as refused; one the server
rejected unseen, because the run was continuing as new as it arrived, is no
answer at all, and the decision inbox sends it again to the run that follows
(`make chaos` lost an acknowledged click so, told "Not recorded")."""

from __future__ import annotations

from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, ServerError

from constitution.errors import ErrorType
from workflows.client import refusal_reason, refused_by_round

UNSEEN = (
    "Workflow Update is rejected because it wasn't processed by worker. "
    "Probably, Workflow Update is not supported by the worker."
)


def test_the_rounds_own_refusal_is_an_answer_in_its_validators_words() -> None:
    refused = WorkflowUpdateFailedError(
        ApplicationError("U0MALLORY is not a reviewer", type=ErrorType.not_a_reviewer)
    )
    assert refused_by_round(refused)
    assert refusal_reason(refused) == "U0MALLORY is not a reviewer"


def test_an_update_the_server_rejected_unseen_is_not_the_rounds_answer() -> None:
    unseen = WorkflowUpdateFailedError(ServerError(UNSEEN, non_retryable=True))
    assert not refused_by_round(unseen)
