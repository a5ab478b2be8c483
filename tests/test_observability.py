"""Metrics and logs: the worker's Prometheus endpoint carries Temporal's
runtime metrics and amend's own counters, the gateway serves /metrics by
route template, and JSON logs carry the round and proposal ids."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from standins.reviewer import wait_for_proposals
from standins.serving import free_port
from tests.conftest import StackFactory, operator_api
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
