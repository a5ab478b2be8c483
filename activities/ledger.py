"""Ledger writes as activities. Each is idempotent (see `ledger.store`), so
Temporal may retry any of them after a crash without writing twice."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from temporalio import activity
from temporalio.exceptions import ApplicationError

from constitution import ConstitutionVersion, Proposal, TransitionRecord
from constitution.contracts import (
    DecisionAttemptInput,
    OpenRoundInput,
    RecordDecisionInput,
    SaveVersionInput,
)
from constitution.errors import ErrorType
from ledger.errors import LedgerError
from ledger.store import Ledger
from workflows import activities as defined


@contextmanager
def _refusals_are_final() -> Iterator[None]:
    """A write the ledger refuses as inconsistent will be refused again on
    every retry: fail the activity for good instead of retrying forever."""
    try:
        yield
    except LedgerError as error:
        raise ApplicationError(
            str(error), type=ErrorType.ledger_refused, non_retryable=True
        ) from error


class LedgerActivities(defined.LedgerActivities):
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    @activity.defn
    async def open_round(self, request: OpenRoundInput) -> ConstitutionVersion:
        """Record the round and return the constitution version it amends."""
        wanted = request.spec.constitution_version
        version = await self.ledger.get_version(wanted)
        # The round is recorded either way, so a round that cannot start is
        # still in the ledger, failed with its reason.
        await self.ledger.open_round(request.spec, version.number if version else None)
        if version is None:
            which = f"version {wanted}" if wanted else "any version"
            raise ApplicationError(
                f"the ledger has no constitution ({which}); run `amend migrate --seed` "
                "or import one first",
                type=ErrorType.no_constitution,
                non_retryable=True,
            )
        return version

    @activity.defn
    async def load_version(self, number: int | None) -> ConstitutionVersion:
        version = await self.ledger.get_version(number)
        if version is None:
            raise ApplicationError(
                f"constitution version {number} is missing",
                type=ErrorType.no_constitution,
                non_retryable=True,
            )
        return version

    @activity.defn
    async def record_transitions(self, records: list[TransitionRecord]) -> int:
        with _refusals_are_final():
            written = await self.ledger.record_transitions(records)
        if written:
            # Counted once per row written, not per retry; on the worker's
            # Prometheus endpoint beside Temporal's own metrics.
            counter = activity.metric_meter().create_counter(
                "amend_transitions", "State changes written to the ledger."
            )
            for record in records[-written:]:
                counter.add(1, {"entity": record.entity.split(":", 1)[0], "to": record.to_state})
                activity.logger.info(
                    "%s %s -> %s by %s",
                    record.entity,
                    record.from_state,
                    record.to_state,
                    record.actor,
                    extra={
                        "round_id": record.round_id,
                        "actor": record.actor,
                        **(
                            {"proposal_id": record.entity.removeprefix("proposal:")}
                            if record.entity.startswith("proposal:")
                            else {}
                        ),
                    },
                )
        return written

    @activity.defn
    async def save_proposals(self, proposals: list[Proposal]) -> None:
        await self.ledger.save_proposals(proposals)

    @activity.defn
    async def record_decision(self, request: RecordDecisionInput) -> bool:
        new = await self.ledger.record_decision(
            request.round_id, request.decision_id, request.decision
        )
        if new:
            decision = request.decision
            activity.metric_meter().create_counter(
                "amend_decisions", "Decisions taken, by kind and whether an operator overrode."
            ).add(1, {"kind": decision.kind.value, "override": str(decision.override).lower()})
        return new

    @activity.defn
    async def record_decision_attempt(self, request: DecisionAttemptInput) -> None:
        await self.ledger.record_decision_attempt(**request.model_dump())

    @activity.defn
    async def save_version(self, request: SaveVersionInput) -> ConstitutionVersion:
        """Store the round's new version. Numbers are given in order of creation:
        if another round took the number meanwhile, this one takes the next."""
        version = request.version
        stored = await self.ledger.version_with_hash(
            version.content_hash, made_by_round=request.round_id
        )
        if stored is None:
            latest = await self.ledger.get_version()
            number = max(version.number, latest.number + 1 if latest else 1)
            version = version.model_copy(update={"number": number})
            with _refusals_are_final():
                await self.ledger.save_version(version)
        else:
            version = stored
        await self.ledger.set_result_version(request.round_id, version.number)
        return version
