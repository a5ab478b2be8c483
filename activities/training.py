"""Retraining under a new constitution version: the dataset (the supervised and
preference stages of Constitutional AI) and the fine-tune job.

Dataset generation heartbeats how many examples are done and keeps them in a
partial file, so a worker killed half-way resumes where it stopped instead of
paying for the finished examples again. The final file is content-addressed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any, Protocol

import openai
from openai import AsyncOpenAI
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.model import Model, Prompt
from constitution import ConstitutionVersion, PreferenceJudgement, Principle
from constitution.contracts import Dataset, DatasetInput, FineTuneInput, FineTuneJob
from constitution.samples import load_prompts
from ledger.store import Ledger

ANSWER_SYSTEM = "You are a helpful, honest and harmless assistant."


class ArtifactStore(Protocol):
    """Where datasets go. `file://` here; a bucket implements the same two calls."""

    def put(self, data: bytes, suffix: str) -> str: ...

    def get(self, uri: str) -> bytes: ...


class FileArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, data: bytes, suffix: str) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = (self.root / "datasets" / f"{digest}{suffix}").resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return path.as_uri()

    def get(self, uri: str) -> bytes:
        if not uri.startswith("file://"):
            raise ValueError(f"not a file URI: {uri}")
        return Path(uri.removeprefix("file://")).read_bytes()

    def scratch(self, name: str) -> Path:
        path = self.root / "scratch" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


def draw_principle(version: ConstitutionVersion, key: str) -> Principle:
    """A principle drawn for one example; deterministic so a resumed run draws the same."""
    index = int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(version.principles)
    return version.principles[index]


class TrainingActivities:
    def __init__(
        self,
        model: Model,
        client: AsyncOpenAI,
        ledger: Ledger,
        store: FileArtifactStore,
        backend: str = "openai",
    ) -> None:
        self.model = model
        self.client = client
        self.ledger = ledger
        self.store = store
        self.backend = backend
        self.critique = Prompt.load("critique.v1")
        self.revise = Prompt.load("revise.v1")
        self.prefer = Prompt.load("prefer.v1")

    @activity.defn(name="generate_dataset")
    async def generate_dataset(self, request: DatasetInput) -> Dataset:
        prompts = load_prompts("training_prompts.jsonl")
        # The prompt set is cycled to the requested count; the pass number keeps ids unique.
        wanted = [
            {**prompt, "id": f"{prompt['id']}#{i // len(prompts)}"}
            for i in range(request.training.prompt_count)
            for prompt in [prompts[i % len(prompts)]]
        ]
        partial = self.store.scratch(f"{request.round_id}.partial.jsonl")
        details = activity.info().heartbeat_details
        done = int(details[0]) if details else 0
        rows: list[dict[str, Any]] = []
        if done and partial.exists():
            rows = [json.loads(line) for line in partial.read_text().splitlines()[:done]]
        partial.write_text("".join(json.dumps(r) + "\n" for r in rows))
        batch = self.model.concurrency  # as many as the model may serve at once
        method = request.training.method
        while len(rows) < len(wanted):
            chunk = wanted[len(rows) : len(rows) + batch]
            made = await asyncio.gather(
                *(
                    self._example(request.round_id, request.constitution, item, method)
                    for item in chunk
                )
            )
            with partial.open("a") as out:
                for row in made:
                    out.write(json.dumps(row) + "\n")
            rows.extend(made)
            activity.heartbeat(len(rows), len(wanted))
        lines = "".join(json.dumps(r["example"], sort_keys=True) + "\n" for r in rows).encode()
        uri = self.store.put(lines, ".jsonl")
        manifest = [{"prompt": r["prompt_id"], "principle": r["principle"]} for r in rows]
        self.store.put(json.dumps(manifest, sort_keys=True).encode(), ".manifest.json")
        partial.unlink(missing_ok=True)
        return Dataset(
            uri=uri, sha256=hashlib.sha256(lines).hexdigest(), examples=len(rows), method=method
        )

    async def _example(
        self, round_id: str, version: ConstitutionVersion, item: dict[str, str], method: str
    ) -> dict[str, Any]:
        principle = draw_principle(version, f"{round_id}:{item['id']}")
        rule = f"<principle>{principle.id}. {principle.title}: {principle.text}</principle>"
        prompt = item["prompt"]
        response = await self.model.text(ANSWER_SYSTEM, prompt)
        critique = await self.model.text(
            self.critique.text,
            f"{rule}\n<prompt>{prompt}</prompt>\n<response>{response}</response>",
        )
        revision = await self.model.text(
            self.revise.text,
            f"{rule}\n<prompt>{prompt}</prompt>\n<response>{response}</response>\n"
            f"<critique>{critique}</critique>",
        )
        if method == "dpo":
            judgement, _ = await self.model.structured(
                PreferenceJudgement,
                self.prefer.text,
                f"{rule}\n<prompt>{prompt}</prompt>\n<response_a>{response}</response_a>\n"
                f"<response_b>{revision}</response_b>",
            )
            chosen, other = (
                (response, revision) if judgement.preferred == "A" else (revision, response)
            )
            example: dict[str, Any] = {
                "input": {"messages": [{"role": "user", "content": prompt}]},
                "preferred_output": [{"role": "assistant", "content": chosen}],
                "non_preferred_output": [{"role": "assistant", "content": other}],
            }
        else:
            example = {
                "messages": [
                    {"role": "user", "content": prompt},
                    {"role": "assistant", "content": revision},
                ]
            }
        return {"prompt_id": item["id"], "principle": principle.id, "example": example}

    @activity.defn(name="start_fine_tune")
    async def start_fine_tune(self, request: FineTuneInput) -> FineTuneJob:
        """Upload the dataset and start the job, once per round: a retry finds
        the job it already started in the ledger."""
        known = await self.ledger.training_job_for_round(request.round_id)
        if known is not None:
            return FineTuneJob(
                job_id=known["job_id"],
                status=known["status"],
                fine_tuned_model=known["fine_tuned_model"],
            )
        data = self.store.get(request.dataset.uri)
        uploaded = await self.client.files.create(
            file=(f"{request.dataset.sha256}.jsonl", data), purpose="fine-tune"
        )
        hyper = {"n_epochs": request.training.n_epochs}
        method: dict[str, Any] = (
            {"type": "dpo", "dpo": {"hyperparameters": hyper}}
            if request.training.method == "dpo"
            else {"type": "supervised", "supervised": {"hyperparameters": hyper}}
        )
        try:
            job = await self.client.fine_tuning.jobs.create(
                model=request.training.base_model,
                training_file=uploaded.id,
                suffix=request.round_id[:40],
                method=method,  # type: ignore[arg-type]
            )
        except openai.BadRequestError as error:
            raise ApplicationError(
                f"the fine-tuning backend refused the job: {error.message}",
                type="FineTuneFailed",
                non_retryable=True,
            ) from error
        await self.ledger.record_training_job(
            job_id=job.id,
            round_id=request.round_id,
            backend=self.backend,
            base_model=request.training.base_model,
            method=request.training.method,
            dataset_uri=request.dataset.uri,
            dataset_hash=request.dataset.sha256,
            examples=request.dataset.examples,
            status=job.status,
        )
        return FineTuneJob(job_id=job.id, status=job.status)

    @activity.defn(name="await_fine_tune")
    async def await_fine_tune(self, request: FineTuneJob) -> FineTuneJob:
        """One poll. Still running raises a retryable error; the workflow's
        retry policy (backoff 1) is the polling loop."""
        job = await self.client.fine_tuning.jobs.retrieve(request.job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            await self.ledger.update_training_job(
                job.id,
                status=job.status,
                fine_tuned_model=job.fine_tuned_model,
                error=job.error.message if job.error else None,
            )
        if job.status == "succeeded":
            return FineTuneJob(
                job_id=job.id, status=job.status, fine_tuned_model=job.fine_tuned_model
            )
        if job.status in ("failed", "cancelled"):
            reason = job.error.message if job.error else job.status
            raise ApplicationError(
                f"fine-tune job {job.id} {job.status}: {reason}",
                type="FineTuneFailed",
                non_retryable=True,
            )
        # BENIGN: an expected "not yet", logged quietly rather than as a failure.
        raise ApplicationError(
            f"fine-tune job {job.id} is {job.status}",
            type="FineTuneRunning",
            category=ApplicationErrorCategory.BENIGN,
        )
