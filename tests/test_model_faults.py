"""The model client against a server that misbehaves: the stand-in model told
to answer malformed or wrong-shaped JSON, cut-off answers, refusals, 429s, 500s,
timeouts and dropped connections. Each fault has one clear outcome: asked again
with the error (invalid output), failed for good (refusal, a request the server
refuses), or left to Temporal's retry (transport faults; 429 after Retry-After).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import openai
import pytest
from temporalio.exceptions import ApplicationError

from activities.model import DEFAULT_RETRY_AFTER, Model, retry_after_delay
from constitution import ProposalBatch
from constitution.samples import load_evidence, sample_constitution
from standins.model.app import create_app
from standins.model.config import ScriptedModelConfig
from standins.serving import Served, serve

SYSTEM = "Propose amendments."


def _user() -> str:
    principles = [p.model_dump(mode="json") for p in sample_constitution().principles]
    evidence = [e.model_dump(mode="json") for e in load_evidence(None)]
    return (
        f"<constitution>{json.dumps(principles)}</constitution>\n"
        f"<evidence>{json.dumps(evidence)}</evidence>\n<max_proposals>2</max_proposals>"
    )


@pytest.fixture(scope="module")
async def served() -> AsyncIterator[Served]:
    async with serve(create_app(ScriptedModelConfig(timeout_fault_s=5))) as running:
        yield running


@pytest.fixture
async def model(served: Served) -> AsyncIterator[Model]:
    async with httpx.AsyncClient(base_url=served.url) as http:
        (await http.post("/_standin/reset")).raise_for_status()
    async with openai.AsyncOpenAI(
        base_url=served.url + "/v1", api_key="k", max_retries=0, timeout=1.0
    ) as client:
        yield Model(client, "amend-proposer", concurrency=2, output_retries=1)


async def _faults(served: Served, *faults: str) -> None:
    async with httpx.AsyncClient(base_url=served.url) as http:
        (await http.post("/_standin/faults", json={"faults": list(faults)})).raise_for_status()


async def _stats(served: Served) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=served.url) as http:
        stats: dict[str, object] = (await http.get("/_standin/stats")).json()
        return stats


@pytest.mark.parametrize("fault", ["malformed_json", "wrong_shape", "length"])
async def test_invalid_output_is_asked_again_once_and_then_accepted(
    served: Served, model: Model, fault: str
) -> None:
    await model.capabilities.of(model.model)  # detected first, so the fault hits the proposal
    await _faults(served, fault)
    answer = await model.structured(ProposalBatch, SYSTEM, _user())
    assert answer.value.proposals and all(call.startswith("req_") for call in answer.calls)
    assert len(answer.calls) == 2
    assert (await _stats(served))["tasks"]["ProposalBatch"] == 2  # type: ignore[index]


@pytest.mark.parametrize(
    ("faults", "reason"),
    [
        (["malformed_json", "malformed_json"], "after 2 attempts"),
        (["wrong_shape", "wrong_shape"], "proposals: Field required"),
        (["length", "length"], "cut off by the length limit"),
    ],
    ids=["malformed-json", "wrong-shape", "over-long"],
)
async def test_output_still_invalid_after_the_retries_fails_for_good_with_the_reason(
    served: Served, model: Model, faults: list[str], reason: str
) -> None:
    await model.capabilities.of(model.model)
    await _faults(served, *faults)
    with pytest.raises(ApplicationError) as caught:
        await model.structured(ProposalBatch, SYSTEM, _user())
    assert caught.value.type == "ModelOutputInvalid" and caught.value.non_retryable
    assert "did not match ProposalBatch" in str(caught.value) and reason in str(caught.value)


async def test_a_refusal_fails_for_good_and_says_so(served: Served, model: Model) -> None:
    await model.capabilities.of(model.model)
    await _faults(served, "refusal")
    with pytest.raises(ApplicationError, match="the model refused") as caught:
        await model.structured(ProposalBatch, SYSTEM, _user())
    assert caught.value.non_retryable


async def test_a_429_asks_temporal_to_wait_as_long_as_retry_after_says(
    served: Served, model: Model
) -> None:
    await model.capabilities.of(model.model)
    await _faults(served, "rate_limit")
    with pytest.raises(ApplicationError) as caught:
        await model.structured(ProposalBatch, SYSTEM, _user())
    assert caught.value.type == "ModelRateLimited"
    assert not caught.value.non_retryable
    assert caught.value.next_retry_delay == timedelta(seconds=1)


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("server_error", openai.InternalServerError),
        ("timeout", openai.APITimeoutError),
        ("drop", openai.APIConnectionError),
    ],
)
async def test_transport_faults_are_left_for_temporal_to_retry(
    served: Served, model: Model, fault: str, error: type[Exception]
) -> None:
    await model.capabilities.of(model.model)
    await _faults(served, fault)
    with pytest.raises(error):
        await model.structured(ProposalBatch, SYSTEM, _user())
    # One call, no retry by the client: Temporal is the only retry layer.
    assert sum((await _stats(served))["faults_served"].values()) == 1  # type: ignore[attr-defined]


async def test_a_request_the_server_refuses_fails_for_good(served: Served, model: Model) -> None:
    with pytest.raises(ApplicationError) as caught:
        await model.structured(ProposalBatch, SYSTEM, "no constitution here")
    assert caught.value.type == "ModelRequestRefused" and caught.value.non_retryable
    assert "(400)" in str(caught.value) and "constitution" in str(caught.value)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "250"}, timedelta(milliseconds=250)),
        ({"retry-after": "3"}, timedelta(seconds=3)),
        ({"retry-after": "Thu, 01 Jan 1970 00:00:00 GMT"}, timedelta(0)),
        (
            {"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0.5s"},
            timedelta(minutes=6, seconds=0.5),
        ),
        ({"x-ratelimit-reset-requests": "20ms"}, timedelta(milliseconds=20)),
        ({"retry-after": "soon", "x-ratelimit-reset-requests": "later"}, DEFAULT_RETRY_AFTER),
        ({}, DEFAULT_RETRY_AFTER),
    ],
    ids=[
        "milliseconds",
        "seconds",
        "http-date-past",
        "reset-headers",
        "reset-ms",
        "garbage",
        "absent",
    ],
)
def test_retry_after_is_read_in_each_form_a_server_may_send(
    headers: dict[str, str], expected: timedelta
) -> None:
    assert retry_after_delay(httpx.Response(429, headers=headers)) == expected


def test_a_retry_after_date_in_the_future_is_waited_for() -> None:
    later = datetime.now(UTC) + timedelta(minutes=5)
    delay = retry_after_delay(httpx.Response(429, headers={"retry-after": format_datetime(later)}))
    assert timedelta(minutes=4) < delay <= timedelta(minutes=5)
