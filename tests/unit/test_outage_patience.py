"""How long a round waits out an outage: the operator's setting
(AMEND_OUTAGE_PATIENCE, seconds or ISO 8601) unless the round spec says."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from constitution import RoundSpec
from worker.settings import Settings


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("21600", timedelta(hours=6)),
        ("90.5", timedelta(seconds=90.5)),
        ("PT2H", timedelta(hours=2)),
        ("P1D", timedelta(days=1)),
    ],
)
def test_the_setting_reads_seconds_or_an_iso_8601_duration_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, written: str, meant: timedelta
) -> None:
    monkeypatch.setenv("AMEND_OUTAGE_PATIENCE", written)
    assert Settings(_env_file=None).outage_patience == meant


def test_unset_it_is_six_hours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMEND_OUTAGE_PATIENCE", raising=False)
    assert Settings(_env_file=None).outage_patience == timedelta(hours=6)


@pytest.mark.parametrize("written", ["0", "-5", "soon", "PT"])
def test_a_patience_that_is_not_a_positive_duration_is_refused(
    monkeypatch: pytest.MonkeyPatch, written: str
) -> None:
    monkeypatch.setenv("AMEND_OUTAGE_PATIENCE", written)
    with pytest.raises(ValidationError, match="outage_patience"):
        Settings(_env_file=None)


def test_a_spec_without_a_patience_takes_the_operators() -> None:
    spec = RoundSpec.model_validate({"round_id": "r1", "reviewers": ["U1"]})
    assert spec.with_outage_patience(timedelta(minutes=20)).outage_patience == timedelta(minutes=20)


def test_a_spec_that_sets_its_patience_keeps_it_even_when_it_is_the_default() -> None:
    for own in ("PT1H", "PT6H"):
        spec = RoundSpec.model_validate(
            {"round_id": "r1", "reviewers": ["U1"], "outage_patience": own}
        )
        kept = spec.with_outage_patience(timedelta(minutes=20))
        assert kept.outage_patience == spec.outage_patience
