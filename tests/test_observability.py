"""Metrics and logs: the worker's Prometheus endpoint carries Temporal's
runtime metrics and amend's own counters, the gateway serves /metrics by
route template, and JSON logs carry the round and proposal ids."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from ledger.store import Ledger
from standins.reviewer import wait_for_proposals
from standins.serving import free_port
from tests.conftest import StackFactory, eventually, operator_api, recorded_round
from worker.observability import JsonLogFormatter, metrics_runtime


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Everything logged while the test runs, as amend's JSON log lines."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    # Other tests run the CLI in-process, which quietens Temporal's loggers.
    loggers = [root, logging.getLogger("temporalio.activity")]
    levels = [logger.level for logger in loggers]
    root.addHandler(handler)
    for logger in loggers:
        logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


async def test_the_worker_exports_temporal_and_amend_metrics_and_logs_carry_ids(
    dev_server: WorkflowEnvironment, stack_on: StackFactory, json_logs: io.StringIO
) -> None:
    bind = f"127.0.0.1:{free_port('127.0.0.1')}"
    client = await Client.connect(
        dev_server.client.service_client.config.target_host,
        data_converter=pydantic_data_converter,
        runtime=metrics_runtime(bind),
    )
    async with stack_on(dev_server, client=client) as stack:
        async with operator_api(stack) as http:
            body = {"round_id": "observed", "reviewers": ["U0ALICE"], "max_proposals": 2}
            assert (await http.post("/api/rounds", json=body)).status_code == 201
            await wait_for_proposals(stack.slack_stand_in_url or "", 2, wait_s=30)
            await http.get("/api/rounds/observed/timeline")
            await http.get("/api/rounds/nope/timeline")
            gateway_metrics = (await http.get("/metrics")).text
            await http.post("/api/rounds/observed/cancel", json={"reason": "done"})
        async with httpx.AsyncClient() as http:
            worker_metrics = (await http.get(f"http://{bind}/metrics")).text

    counted = {
        line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1]
        for line in worker_metrics.splitlines()
        if line.startswith("amend_transitions{")
    }
    posted = [key for key in counted if 'entity="proposal"' in key and 'to="posted"' in key]
    assert len(posted) == 1 and counted[posted[0]] == "2"  # once per row written

    assert "temporal_workflow_task_execution_latency" in worker_metrics
    assert "temporal_activity_execution_latency" in worker_metrics

    assert (
        'amend_gateway_requests_total{method="GET",route="/api/rounds/{round_id}/timeline",'
        'status="200"} 1.0' in gateway_metrics
    )
    assert 'route="/api/rounds/{round_id}/timeline",status="404"} 1.0' in gateway_metrics
    assert "/api/rounds/nope" not in gateway_metrics  # labels are templates, not paths

    lines = [json.loads(line) for line in json_logs.getvalue().splitlines() if line]
    named = [
        entry for entry in lines if entry.get("round_id") == "observed" and entry.get("proposal_id")
    ]
    assert named, "no JSON log line named the round and a proposal"
    assert all(entry["workflow_id"] == "round-observed" for entry in named)
    assert {"time", "level", "logger", "message"} <= named[0].keys()


DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
# Series Prometheus makes itself, not the gateway.
PROMETHEUS_OWN = {"up"}
PROMQL_FUNCTIONS = {"sum", "max", "min", "rate", "delta"}


def metric_names(expr: str) -> set[str]:
    """The series a PromQL expression reads (label matchers and functions left out)."""
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"|\b(by|without)\s*\([^)]*\)", " ", expr)
    return {
        name
        for name in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare)
        if name not in PROMQL_FUNCTIONS and not name.isdigit()
    }


def alert_and_dashboard_series() -> set[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    exprs = [str(rule["expr"]) for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "amend.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if "expr" in t]
    return {name for expr in exprs for name in metric_names(expr)} - PROMETHEUS_OWN


async def test_metrics_carry_the_gauges_alerts_read_and_a_route_for_every_route(
    dev_server: WorkflowEnvironment, stack_on: StackFactory, ledger: Ledger
) -> None:
    # A round Slack refuses, as the workflow records it: a `slack` ok -> blocked row.
    await recorded_round(
        ledger,
        "stuck",
        [
            ("round", None, "created", "workflow", ""),
            ("round", "created", "proposing", "workflow", ""),
            ("slack", "ok", "blocked", "workflow", "channel_not_found"),
        ],
    )
    async with stack_on(dev_server) as stack, operator_api(stack) as http:
        body = {"round_id": "gauged", "reviewers": ["U0ALICE"], "max_proposals": 2}
        assert (await http.post("/api/rounds", json=body)).status_code == 201
        await wait_for_proposals(stack.slack_stand_in_url or "", 2, wait_s=30)

        async def in_review() -> bool:
            timeline = await ledger.timeline("gauged")
            return any(t.entity == "round" and t.to_state == "in_review" for t in timeline)

        # Posted in Slack a moment before the round records that its review began.
        await eventually(in_review, "the round in review", 30)
        for path in ("/docs", "/openapi.json", "/metrics", "/no/such/route"):
            await http.get(path)
        scraped = (await http.get("/metrics")).text
        await http.post("/api/rounds/gauged/cancel", json={"reason": "done"})

    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in scraped.splitlines()
        if line and not line.startswith("#")
    }
    assert values["amend_ledger_up"] == 1
    assert values["amend_proposals_pending"] == 2
    assert values["amend_proposal_oldest_pending_seconds"] > 0
    assert values["amend_rounds_blocked"] == 1
    assert values['amend_rounds{state="proposing"}'] == 1  # the blocked one
    assert values['amend_rounds{state="failed"}'] == 0  # every state, so alerts can compare
    for route in ("/docs", "/openapi.json", "/metrics"):
        assert (
            f'amend_gateway_requests_total{{method="GET",route="{route}",status="200"}}' in values
        )
    assert 'amend_gateway_requests_total{method="GET",route="unmatched",status="404"}' in values

    exported = {re.split(r"[{ ]", line, maxsplit=1)[0] for line in scraped.splitlines()}
    read = alert_and_dashboard_series()
    assert {"amend_proposal_oldest_pending_seconds", "amend_rounds_blocked", "amend_rounds"} <= read
    missing = read - exported
    assert not missing, (
        f"deploy/ alerts or panels read series the gateway does not serve: {missing}"
    )
