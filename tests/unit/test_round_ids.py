"""A round's workflow id is made and read in one place."""

from __future__ import annotations

from constitution import RoundSpec, round_id_of, round_workflow_id


def test_a_round_id_survives_the_trip_through_its_workflow_id() -> None:
    assert round_id_of(round_workflow_id("r-2026-12")) == "r-2026-12"


def test_a_spec_names_the_same_workflow_id() -> None:
    spec = RoundSpec(round_id="r1", reviewers=["U1"])
    assert spec.workflow_id == round_workflow_id("r1")


def test_a_workflow_id_of_something_else_names_no_round() -> None:
    assert round_id_of("cron-nightly") is None
    assert round_id_of("round-") is None
