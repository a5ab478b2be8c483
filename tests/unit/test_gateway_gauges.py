"""The business gauges never report a stale figure: while the ledger cannot be
read they are absent and `amend_ledger_up` is 0."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from gateway.metrics import LedgerGauges
from ledger.dashboards import AlertFigures


def scrape(gauges: LedgerGauges) -> str:
    registry = CollectorRegistry()
    registry.register(gauges)
    return generate_latest(registry).decode()


def test_the_gauges_report_the_figures_read_for_this_scrape() -> None:
    gauges = LedgerGauges()
    gauges.figures = AlertFigures(
        pending=3, oldest_pending_s=7200.0, rounds_by_state={"in_review": 2}, blocked=1
    )
    text = scrape(gauges)
    assert "amend_ledger_up 1.0" in text
    assert "amend_proposals_pending 3.0" in text
    assert "amend_proposal_oldest_pending_seconds 7200.0" in text
    assert 'amend_rounds{state="in_review"} 2.0' in text
    assert 'amend_rounds{state="cancelled"} 0.0' in text
    assert "amend_rounds_blocked 1.0" in text


def test_without_the_ledger_only_amend_ledger_up_is_reported_as_0() -> None:
    text = scrape(LedgerGauges())
    assert "amend_ledger_up 0.0" in text
    assert "amend_proposals_pending" not in text and "amend_rounds_blocked" not in text
