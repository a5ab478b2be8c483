"""Chat completions through the OpenAI Batch API, for large datasets.

One batch per step of the recipe: the requests are uploaded as a JSONL file,
the batch is created, and the activity looks at it every poll interval,
heartbeating the batch id, so a replacement worker waits for the same batch
instead of paying for it again. Requests that failed are a clear error naming
the first failure.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from openai import AsyncOpenAI
from temporalio.exceptions import ApplicationError

from constitution.errors import ErrorType

WAITING = frozenset({"validating", "in_progress", "finalizing"})


class BatchRunner:
    def __init__(self, client: AsyncOpenAI) -> None:
        self.client = client

    async def run(
        self,
        name: str,
        bodies: dict[str, dict[str, Any]],
        waiting: Callable[[str], None],
        *,
        poll_s: float,
        resume: str | None = None,
    ) -> dict[str, str]:
        """Answers by custom id; `waiting` is told the batch id while it runs."""
        if resume is not None:
            batch = await self.client.batches.retrieve(resume)
        else:
            lines = "".join(
                json.dumps(
                    {"custom_id": key, "method": "POST", "url": "/v1/chat/completions", "body": b}
                )
                + "\n"
                for key, b in bodies.items()
            )
            uploaded = await self.client.files.create(
                file=(f"{name}.jsonl", lines.encode()), purpose="batch"
            )
            batch = await self.client.batches.create(
                input_file_id=uploaded.id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
                metadata={"amend": name[:500]},
            )
        waiting(batch.id)
        while batch.status in WAITING:
            await asyncio.sleep(poll_s)
            batch = await self.client.batches.retrieve(batch.id)
            waiting(batch.id)
        if batch.status != "completed":
            raise ApplicationError(
                f"batch {batch.id} for {name} ended {batch.status}",
                type=ErrorType.batch_failed,
                non_retryable=True,
            )
        answers: dict[str, str] = {}
        if batch.output_file_id:
            output = await self.client.files.content(batch.output_file_id)
            for line in output.text.splitlines():
                row = json.loads(line)
                body = (row.get("response") or {}).get("body") or {}
                answers[row["custom_id"]] = body["choices"][0]["message"]["content"] or ""
        missing = sorted(set(bodies) - set(answers))
        if missing:
            first = ""
            if batch.error_file_id:
                errors = await self.client.files.content(batch.error_file_id)
                first = json.loads(errors.text.splitlines()[0]).get("error", {}).get("message", "")
            raise ApplicationError(
                f"{len(missing)} of {len(bodies)} requests of batch {batch.id} for {name} "
                f"failed{': ' + first if first else ''}",
                type=ErrorType.batch_failed,
                non_retryable=True,
            )
        return answers
