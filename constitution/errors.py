"""The names of the failures amend raises across Temporal's boundary.

An `ApplicationError` reaches the workflow, the gateway and the CLI as its
`type` string only. Raising and matching that string as a literal in two
packages lets a typo turn a blocked round into a failed one without a test
noticing; one enum, used on both sides, makes it a name that mypy and ruff
check. The values are the strings already recorded in workflow histories, so
they never change.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorType(StrEnum):
    """Every `ApplicationError.type` amend raises, and what it tells the caller."""

    # -- the round refuses an order (update validators); nothing changed --------
    unknown_proposal = "UnknownProposal"
    not_a_reviewer = "NotAReviewer"
    not_posted = "NotPosted"
    already_settled = "AlreadySettled"
    already_voted = "AlreadyVoted"
    round_not_in_review = "RoundNotInReview"
    round_ended = "RoundEnded"
    nothing_pending = "NothingPending"

    # -- the round fails, with the reason visible --------------------------------
    round_failed = "RoundFailed"
    no_constitution = "NoConstitution"
    ledger_refused = "LedgerRefused"
    evidence_file_error = "EvidenceFileError"
    prompt_set_error = "PromptSetError"
    model_output_invalid = "ModelOutputInvalid"
    model_request_refused = "ModelRequestRefused"
    grader_output_invalid = "GraderOutputInvalid"
    batch_failed = "BatchFailed"
    fine_tune_failed = "FineTuneFailed"
    fine_tune_timed_out = "FineTuneTimedOut"
    preflight_refused = "PreflightRefused"
    evaluation_backend_missing = "EvaluationBackendMissing"

    # -- retried by Temporal: transient, or a wait that is expected --------------
    model_rate_limited = "ModelRateLimited"
    fine_tune_running = "FineTuneRunning"
    slack_channel_busy = "SlackChannelBusy"
    inspect_eval_failed = "InspectEvalFailed"

    # -- the round blocks until an operator fixes Slack --------------------------
    slack_permanent_error = "SlackPermanentError"


__all__ = ["ErrorType"]
