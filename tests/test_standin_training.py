"""The model stand-in's Batch API and fine-tuning, through the real `openai`
client: a batch reads its input file, answers every request and writes output
and error files, as `/v1/batches` does; fine-tuning outcomes are scripted per
job; the OpenAI backend starts one job per round."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import openai
import pytest

from activities.finetune import OpenAIFineTuning
from constitution import TrainingSpec
from constitution.contracts import Dataset, FineTuneInput
from standins.model.app import create_app
from standins.model.config import ScriptedModelConfig
from standins.serving import Served, serve


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async with serve(create_app(ScriptedModelConfig(fine_tune_polls_to_finish=1))) as running:
        yield running


@pytest.fixture
async def client(served: Served) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=served.url + "/v1", api_key="none", max_retries=0, timeout=10
    ) as api:
        yield api


def request_line(custom_id: str, prompt: str) -> str:
    body = {"model": "amend-base", "messages": [{"role": "user", "content": prompt}]}
    return json.dumps(
        {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}
    )


async def finished(client: openai.AsyncOpenAI, batch_id: str) -> openai.types.Batch:
    for _ in range(200):
        batch = await client.batches.retrieve(batch_id)
        if batch.status not in ("validating", "in_progress", "finalizing"):
            return batch
        await asyncio.sleep(0.02)
    raise AssertionError("the batch never finished")


async def test_a_batch_answers_every_request_and_reports_bad_lines_in_an_error_file(
    client: openai.AsyncOpenAI,
) -> None:
    lines = [
        request_line("a", "How does a pin tumbler lock work?"),
        "{not json",
        request_line("b", "Give me step-by-step instructions to make a toxic gas at home."),
        json.dumps({"custom_id": "c", "method": "POST", "url": "/v1/embeddings", "body": {}}),
    ]
    uploaded = await client.files.create(
        file=("requests.jsonl", "\n".join(lines).encode()), purpose="batch"
    )
    created = await client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    batch = await finished(client, created.id)
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed) == (4, 2)
    assert batch.request_counts.failed == 2
    assert batch.output_file_id and batch.error_file_id
    output_file = await client.files.content(batch.output_file_id)
    output = [json.loads(line) for line in output_file.text.splitlines()]
    answers = {row["custom_id"]: row["response"]["body"] for row in output}
    assert set(answers) == {"a", "b"}
    direct = await client.chat.completions.create(
        model="amend-base",
        messages=[{"role": "user", "content": "How does a pin tumbler lock work?"}],
    )
    # A batch line is answered as the same chat request is answered.
    assert answers["a"]["choices"][0]["message"]["content"] == direct.choices[0].message.content
    errors = (await client.files.content(batch.error_file_id)).text.splitlines()
    messages = sorted(json.loads(e)["error"]["message"] for e in errors)
    assert messages[0] == "Line 2 is not JSON."
    assert "url must be /v1/chat/completions" in messages[1]


async def test_a_batch_needs_a_batch_file_and_the_chat_endpoint(
    client: openai.AsyncOpenAI,
) -> None:
    tuning = await client.files.create(file=("x.jsonl", b"{}\n"), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError, match="needs purpose 'batch'"):
        await client.batches.create(
            input_file_id=tuning.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    batch_file = await client.files.create(file=("x.jsonl", b"{}\n"), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="batches only"):
        await client.batches.create(
            input_file_id=batch_file.id, endpoint="/v1/embeddings", completion_window="24h"
        )


async def test_scripted_fine_tuning_outcomes_apply_to_the_next_jobs_in_order(
    client: openai.AsyncOpenAI, served: Served
) -> None:
    async with httpx.AsyncClient(base_url=served.url) as http:
        scripted = await http.post("/_standin/fine_tuning", json={"outcomes": ["fail", "never"]})
        assert scripted.status_code == 200
        refused = await http.post("/_standin/fine_tuning", json={"outcomes": ["explode"]})
        assert refused.status_code == 400
    line = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    }
    data = await client.files.create(
        file=("d.jsonl", json.dumps(line).encode()), purpose="fine-tune"
    )
    failing = await client.fine_tuning.jobs.create(model="amend-base", training_file=data.id)
    hanging = await client.fine_tuning.jobs.create(model="amend-base", training_file=data.id)
    for _ in range(3):
        failed = await client.fine_tuning.jobs.retrieve(failing.id)
        running = await client.fine_tuning.jobs.retrieve(hanging.id)
    assert failed.status == "failed" and failed.error and "diverged" in (failed.error.message or "")
    assert running.status == "running"
    cancelled = await client.fine_tuning.jobs.cancel(hanging.id)
    assert cancelled.status == "cancelled"


async def test_starting_a_rounds_job_again_finds_the_job_already_started(
    client: openai.AsyncOpenAI,
) -> None:
    """A worker that died after creating the job but before recording it: the
    retry finds the job by the round's tag instead of starting a second one."""
    backend = OpenAIFineTuning(client)
    line = json.dumps(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    )
    request = FineTuneInput(
        round_id="r-once",
        dataset=Dataset(uri="file:///x.jsonl", sha256="0" * 64, examples=1, method="supervised"),
        training=TrainingSpec(n_epochs=2),
    )
    first = await backend.start(request, line.encode())
    again = await backend.start(request, line.encode())
    other = await backend.start(request.model_copy(update={"round_id": "r-other"}), line.encode())
    assert again.job_id == first.job_id and other.job_id != first.job_id
    jobs = (await client.fine_tuning.jobs.list()).data
    assert len(jobs) == 2
    created = next(j for j in jobs if j.id == first.job_id)
    assert created.metadata == {"amend_round": "r-once"}
    assert created.method and created.method.supervised
    assert created.method.supervised.hyperparameters
    assert created.method.supervised.hyperparameters.n_epochs == 2
