"""Retraining under a new constitution version: the dataset (the supervised and
preference stages of Constitutional AI) and the fine-tune job.

Every finished example is kept in the ledger under its position in the round's
prompt list before the next is counted, and progress is heartbeated. A worker
killed half-way is replaced by a retry that reads what was kept and generates
only the rest: nothing paid for is paid for again, and the primary key on the
position means nothing is written twice. The final file is content-addressed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from pydantic import BaseModel, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.batch import BatchRunner
from activities.finetune import FineTuneBackend, FineTuneRefused, HttpTrainer, JobState
from activities.inspect_eval import missing_extra
from activities.liveness import beat, heartbeating
from activities.model import Model
from activities.prompts import Prompt
from constitution import ConstitutionVersion, PreferenceJudgement, Principle
from constitution.capabilities import preflight_problems
from constitution.contracts import (
    CancelFineTuneInput,
    Dataset,
    DatasetInput,
    DatasetShard,
    DatasetShardInput,
    FineTuneInput,
    FineTuneJob,
    PreflightInput,
    PreflightResult,
    Progress,
)
from constitution.errors import ErrorType
from constitution.models import EvaluationBackend
from constitution.prompt_sets import PromptSetError, load_training_prompts
from ledger.store import Ledger
from workflows import activities as defined

ANSWER_SYSTEM = "You are a helpful, honest and harmless assistant."
# A job in these states will never give the round a model: a resumed round starts another.
JOB_ENDED_BADLY = frozenset({"failed", "cancelled"})


class ArtifactWriter(Protocol):
    """An artifact written piece by piece; its address is known once it is whole.

    Used as `async with store.open(suffix) as writer`: leaving the block normally
    stores it and sets `uri` and `sha256`; leaving it by an error leaves nothing.
    """

    uri: str
    sha256: str

    async def write(self, data: bytes) -> None: ...

    async def __aenter__(self) -> ArtifactWriter: ...

    async def __aexit__(self, kind: type[BaseException] | None, *rest: object) -> None: ...


class ArtifactStore(Protocol):
    """Where datasets go, addressed by content. `file://` here; a bucket
    implements the same calls."""

    def put(self, data: bytes, suffix: str) -> str: ...

    def get(self, uri: str) -> bytes: ...

    def open(self, suffix: str) -> ArtifactWriter: ...


class FileArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, data: bytes, suffix: str) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest, suffix)
        if not path.exists():
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return path.as_uri()

    def get(self, uri: str) -> bytes:
        if not uri.startswith("file://"):
            raise ValueError(f"not a file URI: {uri}")
        return Path(uri.removeprefix("file://")).read_bytes()

    def open(self, suffix: str) -> FileArtifactWriter:
        return FileArtifactWriter(self, suffix)

    def _path(self, digest: str, suffix: str) -> Path:
        path = (self.root / "datasets" / f"{digest}{suffix}").resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


class FileArtifactWriter:
    """A file written to a name of its own while it grows, then renamed to its digest:
    two writers of one content (a retried activity) end with one file."""

    def __init__(self, store: FileArtifactStore, suffix: str) -> None:
        self.store = store
        self.suffix = suffix
        self.uri = ""
        self.sha256 = ""
        self._digest = hashlib.sha256()
        self._tmp = store._path(f"writing-{uuid.uuid4().hex}", suffix)
        self._file: BinaryIO | None = None

    async def __aenter__(self) -> FileArtifactWriter:
        self._file = await asyncio.to_thread(self._tmp.open, "wb")
        return self

    async def write(self, data: bytes) -> None:
        assert self._file is not None, "write inside `async with`"
        self._digest.update(data)
        await asyncio.to_thread(self._file.write, data)

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        assert self._file is not None
        await asyncio.to_thread(self._file.close)
        if kind is not None:
            self._tmp.unlink(missing_ok=True)
            return
        self.sha256 = self._digest.hexdigest()
        path = self.store._path(self.sha256, self.suffix)
        await asyncio.to_thread(self._tmp.replace, path)
        self.uri = path.as_uri()


def draw_principle(version: ConstitutionVersion, key: str) -> Principle:
    """A principle drawn for one example; deterministic so a resumed run draws the same."""
    index = int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(version.principles)
    return version.principles[index]


class Draft(BaseModel):
    """One example on its way through the recipe: its place in the round's
    list, its prompt, the principle drawn for it, and the answers so far."""

    position: int
    prompt_id: str
    prompt: str
    principle_id: str
    response: str = ""
    critique: str = ""
    revision: str = ""
    preferred: str | None = None


class BatchCheckpoint(BaseModel):
    """Where a generation through the Batch API stands: heartbeated beside the
    progress, so a replacement worker picks up the batch it was waiting for."""

    step: int = 0
    batch_id: str | None = None
    drafts_uri: str | None = None


def recipe(method: str, passes: int) -> list[str]:
    """The Constitutional AI steps of one example, in order."""
    return ["answer", *(["critique", "revise"] * passes), *(["prefer"] if method == "dpo" else [])]


def _example_of(draft: Draft, method: str) -> dict[str, Any]:
    """The fine-tuning line of a finished draft: chat SFT or a DPO pair."""
    if method != "dpo":
        return {
            "messages": [
                {"role": "user", "content": draft.prompt},
                {"role": "assistant", "content": draft.revision},
            ]
        }
    first, revised = draft.response, draft.revision
    chosen, other = (first, revised) if draft.preferred == "A" else (revised, first)
    return {
        "input": {"messages": [{"role": "user", "content": draft.prompt}]},
        "preferred_output": [{"role": "assistant", "content": chosen}],
        "non_preferred_output": [{"role": "assistant", "content": other}],
    }


def _judged(answer: str, draft: Draft) -> str:
    """The preference in a batch's answer, validated as the online path validates it."""
    try:
        return PreferenceJudgement.model_validate_json(answer).preferred
    except ValidationError as error:
        raise ApplicationError(
            f"the model's judgement for {draft.prompt_id} did not match PreferenceJudgement: "
            f"{error.errors()[0]['msg']}",
            type=ErrorType.model_output_invalid,
            non_retryable=True,
        ) from error


def _teaches_nothing(example: dict[str, Any]) -> str | None:
    """Why an example is left out of the file, or None. A preference pair of
    two equal answers carries no preference: DPO would learn nothing from it."""
    if "preferred_output" in example and (
        example["preferred_output"] == example["non_preferred_output"]
    ):
        return "both answers are the same"
    return None


def _rule(principle: Principle) -> str:
    return f"<principle>{principle.id}. {principle.title}: {principle.text}</principle>"


class TrainingActivities(defined.TrainingActivities):
    def __init__(
        self,
        model: Model,
        ledger: Ledger,
        store: ArtifactStore,
        backends: dict[str, FineTuneBackend],
        batches: BatchRunner | None = None,
    ) -> None:
        self.model = model
        self.ledger = ledger
        self.store = store
        self.backends = backends
        self.batches = batches or BatchRunner(model.client)
        self.critique = Prompt.load("critique.v1")
        self.revise = Prompt.load("revise.v1")
        self.prefer = Prompt.load("prefer.v2")

    # -- before the round spends anyone's time -----------------------------------

    @activity.defn
    @heartbeating
    async def preflight(self, request: PreflightInput) -> PreflightResult:
        """Whether the round can be trained where it is configured: the model
        server offers an output mode and the fine-tuning (and Batch) API the
        spec needs, or the HTTP trainer answers. Capabilities are detected here
        the first time, so the round's own calls find them known."""
        training = request.training
        found = await self.model.capabilities.of(self.model.model)
        problems = preflight_problems(found, training)
        checked = [
            f"model server {found.base_url}, model {found.model}: output mode "
            f"{found.output_mode or 'none'}"
        ]
        if training.backend == "openai":
            checked.append(f"fine-tuning API: {found.evidence.get('fine_tuning', '?')}")
        if training.use_batch_api:
            checked.append(f"Batch API: {found.evidence.get('batch_api', '?')}")
        if training.backend != "openai":
            backend = self.backends.get(training.backend)
            if backend is None:
                problems.append(
                    f"training.backend is {training.backend!r} but this worker has no such "
                    "backend; set AMEND_TRAINER_URL for 'http', or use 'openai'"
                )
            elif isinstance(backend, HttpTrainer):
                unreachable = await backend.unreachable()
                checked.append(f"trainer {backend.base_url}: {unreachable or 'answers'}")
                if unreachable:
                    problems.append(unreachable)
        if (
            request.gate is not None
            and request.gate.evaluation_backend is EvaluationBackend.inspect
        ):
            missing = missing_extra()
            checked.append(
                f"evaluation backend inspect: {missing.message if missing else 'installed'}"
            )
            if missing is not None:
                problems.append(missing.message)
        return PreflightResult(problems=problems, checked=checked)

    # -- the dataset -------------------------------------------------------------

    @activity.defn
    @heartbeating
    async def generate_dataset(self, request: DatasetInput) -> Dataset:
        shard = DatasetShardInput(
            round_id=request.round_id,
            constitution=request.constitution,
            training=request.training,
            start=0,
            stop=request.training.prompt_count,
        )
        await self._generate(shard)
        return await self._assemble(request)

    @activity.defn
    @heartbeating
    async def generate_dataset_shard(self, request: DatasetShardInput) -> DatasetShard:
        generated = await self._generate(request)
        return DatasetShard(start=request.start, stop=request.stop, generated=generated)

    @activity.defn
    @heartbeating
    async def assemble_dataset(self, request: DatasetInput) -> Dataset:
        return await self._assemble(request)

    async def _generate(self, request: DatasetShardInput) -> int:
        """Generate the examples of positions `start` to `stop` not yet kept; how many."""
        try:
            prompts = load_training_prompts(request.training.prompt_file)
        except PromptSetError as error:
            raise ApplicationError(
                str(error), type=ErrorType.prompt_set_error, non_retryable=True
            ) from error
        kept = await self.ledger.dataset_positions(request.round_id, request.start, request.stop)
        # The prompt set is cycled to the requested count; the pass number keeps ids unique.
        todo = []
        for i in range(request.start, request.stop):
            if i in kept:
                continue
            prompt = prompts[i % len(prompts)]
            prompt_id = f"{prompt.id}#{i // len(prompts)}"
            principle = draw_principle(request.constitution, f"{request.round_id}:{prompt_id}")
            todo.append(
                Draft(
                    position=i, prompt_id=prompt_id, prompt=prompt.prompt, principle_id=principle.id
                )
            )
        total = request.stop - request.start
        done = total - len(todo)
        if done:
            activity.logger.info(
                "round %s: resuming dataset positions %d-%d at %d of %d",
                request.round_id,
                request.start,
                request.stop,
                done,
                total,
            )
        self._beat(done, total, "resumed" if done else "started")
        if request.training.use_batch_api and todo:
            await self._by_batch(request, todo, total)
            for draft in todo:
                await self._keep(request, draft)
        else:
            await self._online(request, todo, total)
        return len(todo)

    async def _online(self, request: DatasetInput, todo: list[Draft], total: int) -> None:
        done = total - len(todo)
        queue: asyncio.Queue[Draft] = asyncio.Queue()
        for draft in todo:
            queue.put_nowait(draft)

        async def work() -> None:
            nonlocal done
            while not queue.empty():
                draft = await self._example(request, queue.get_nowait())
                await self._keep(request, draft)
                done += 1
                self._beat(done, total, f"{draft.prompt_id} under {draft.principle_id}")

        # Twice as many examples under way as the model serves calls at once:
        # each example's calls are sequential, and while one example writes its
        # result or waits to start its next call, another's call takes the slot,
        # so the server is kept at its limit (the model's semaphore holds it there).
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(2 * self.model.concurrency, len(todo))):
                    group.create_task(work())
        except ExceptionGroup as failed:
            # The first failure, as it was raised (an ApplicationError keeps
            # its type and whether retrying can help); the others were cancelled.
            raise failed.exceptions[0] from None

    async def _keep(self, request: DatasetInput, draft: Draft) -> None:
        example = _example_of(draft, request.training.method)
        await self.ledger.record_example(
            round_id=request.round_id,
            position=draft.position,
            prompt_id=draft.prompt_id,
            principle_id=draft.principle_id,
            method=request.training.method,
            example=example,
            skipped=_teaches_nothing(example),
        )

    def _beat(self, done: int, total: int, detail: str) -> None:
        beat(Progress(stage="generating_data", done=done, total=total, detail=detail))

    async def _assemble(self, request: DatasetInput) -> Dataset:
        """The kept examples as one JSONL file and its manifest, streamed a page at a
        time from the ledger, so memory does not grow with the set."""
        examples = skipped = 0
        async with (
            self.store.open(".jsonl") as lines,
            self.store.open(".manifest.json") as manifest,
        ):
            # The manifest is byte for byte `json.dumps(entries, sort_keys=True)`.
            separator = b"["
            async for page in self.ledger.dataset_example_pages(request.round_id):
                kept = [r for r in page if not r.skipped]
                examples += len(kept)
                skipped += len(page) - len(kept)
                if not kept:
                    continue
                await lines.write(
                    "".join(json.dumps(r.example, sort_keys=True) + "\n" for r in kept).encode()
                )
                entries = ", ".join(
                    json.dumps(
                        {
                            "position": r.position,
                            "prompt": r.prompt_id,
                            "principle": r.principle_id,
                        },
                        sort_keys=True,
                    )
                    for r in kept
                )
                await manifest.write(separator + entries.encode())
                separator = b", "
            await manifest.write(b"]" if separator == b", " else b"[]")
        prompt_set = request.training.prompt_file or "shipped"
        dataset = Dataset(
            uri=lines.uri,
            sha256=lines.sha256,
            examples=examples,
            method=request.training.method,
            manifest_uri=manifest.uri,
            prompt_set=prompt_set,
            skipped=skipped,
        )
        await self.ledger.record_dataset(
            round_id=request.round_id,
            constitution_version=request.constitution.number,
            method=dataset.method,
            uri=dataset.uri,
            sha256=dataset.sha256,
            manifest_uri=manifest.uri,
            examples=dataset.examples,
            skipped=dataset.skipped,
            prompt_set=prompt_set,
        )
        return dataset

    def _ask(self, step: str, draft: Draft, version: ConstitutionVersion) -> tuple[str, str]:
        """The system and user message of one step of the recipe."""
        principle = version.principle(draft.principle_id)
        assert principle is not None
        head = f"{_rule(principle)}\n<prompt>{draft.prompt}</prompt>\n"
        if step == "answer":
            return ANSWER_SYSTEM, draft.prompt
        if step == "critique":
            return self.critique.text, f"{head}<response>{draft.revision}</response>"
        if step == "revise":
            return self.revise.text, (
                f"{head}<response>{draft.revision}</response>\n"
                f"<critique>{draft.critique}</critique>"
            )
        return self.prefer.text, (
            f"{head}<response_a>{draft.response}</response_a>\n"
            f"<response_b>{draft.revision}</response_b>"
        )

    @staticmethod
    def _take(step: str, draft: Draft, answer: str) -> None:
        if step == "answer":
            draft.response = draft.revision = answer
        elif step == "critique":
            draft.critique = answer
        elif step == "revise":
            draft.revision = answer
        else:
            draft.preferred = answer

    async def _example(self, request: DatasetInput, draft: Draft) -> Draft:
        """Sample, then critique and revise against the drawn principle
        (`critique_passes` times); for DPO, the model's own judgement of which
        of the first answer and the revision better follows the principle."""
        for step in recipe(request.training.method, request.training.critique_passes):
            system, user = self._ask(step, draft, request.constitution)
            if step == "prefer":
                judgement = await self.model.structured(PreferenceJudgement, self.prefer.text, user)
                answer = judgement.value.preferred
            else:
                answer = await self.model.text(system, user)
            self._take(step, draft, answer)
        return draft

    async def _by_batch(self, request: DatasetInput, drafts: list[Draft], total: int) -> None:
        """The recipe one step at a time over every example, each step one
        batch; after each step the drafts are stored and checkpointed."""
        details = activity.info().heartbeat_details
        checkpoint = (
            BatchCheckpoint.model_validate(details[1]) if len(details) > 1 else BatchCheckpoint()
        )
        if checkpoint.drafts_uri:
            stored = json.loads(self.store.get(checkpoint.drafts_uri))
            drafts = [Draft.model_validate(d) for d in stored]
        steps = recipe(request.training.method, request.training.critique_passes)
        done = total - len(drafts)
        for index in range(checkpoint.step, len(steps)):
            step = steps[index]
            bodies = {}
            for draft in drafts:
                system, user = self._ask(step, draft, request.constitution)
                bodies[str(draft.position)] = self.model.body(
                    system, user, schema=PreferenceJudgement if step == "prefer" else None
                )

            def waiting(
                batch_id: str,
                step: str = step,
                index: int = index,
                at: BatchCheckpoint = checkpoint,
            ) -> None:
                beat(
                    Progress(
                        stage="generating_data",
                        done=done,
                        total=total,
                        detail=f"step {index + 1}/{len(steps)} ({step}): batch {batch_id}",
                    ),
                    at.model_copy(update={"step": index, "batch_id": batch_id}),
                )

            answers = await self.batches.run(
                f"{request.round_id}:{step}",
                bodies,
                waiting,
                poll_s=request.training.poll_interval.total_seconds(),
                resume=checkpoint.batch_id,
            )
            for draft in drafts:
                answer = answers[str(draft.position)]
                if step == "prefer":
                    answer = _judged(answer, draft)
                self._take(step, draft, answer)
            stored_uri = self.store.put(
                json.dumps([d.model_dump() for d in drafts]).encode(), ".drafts.json"
            )
            checkpoint = BatchCheckpoint(step=index + 1, drafts_uri=stored_uri)
            beat(
                Progress(stage="generating_data", done=done, total=total, detail=f"{step} done"),
                checkpoint,
            )

    # -- the fine-tune job ---------------------------------------------------------

    def _backend(self, name: str) -> FineTuneBackend:
        backend = self.backends.get(name)
        if backend is None:
            raise ApplicationError(
                f"no fine-tune backend {name!r} is configured on this worker "
                f"(configured: {', '.join(sorted(self.backends)) or 'none'})",
                type=ErrorType.fine_tune_failed,
                non_retryable=True,
            )
        return backend

    @activity.defn
    @heartbeating
    async def start_fine_tune(self, request: FineTuneInput) -> FineTuneJob:
        """Upload the dataset and start the job, once per round: a retry finds
        the job it already started in the ledger. A resumed round replaces a
        job that failed or was cancelled, never one that runs or succeeded."""
        known = await self.ledger.training_job_for_round(request.round_id)
        if known is not None and not (request.replace_failed and known.status in JOB_ENDED_BADLY):
            return FineTuneJob(
                job_id=known.job_id,
                status=known.status,
                fine_tuned_model=known.fine_tuned_model,
                backend=known.backend,
                poll_url=known.poll_url,
            )
        backend = self._backend(request.training.backend)
        try:
            job = await backend.start(request, self.store.get(request.dataset.uri))
        except FineTuneRefused as error:
            raise ApplicationError(
                f"the fine-tuning backend refused the job: {error}",
                type=ErrorType.fine_tune_failed,
                non_retryable=True,
            ) from error
        await self.ledger.record_training_job(
            job_id=job.job_id,
            round_id=request.round_id,
            backend=backend.name,
            base_model=request.training.base_model,
            method=request.training.method,
            dataset_uri=request.dataset.uri,
            dataset_hash=request.dataset.sha256,
            examples=request.dataset.examples,
            status=job.status,
            poll_url=job.poll_url,
        )
        return job

    @activity.defn
    async def await_fine_tune(self, job: FineTuneJob) -> FineTuneJob:
        """One look at the job. Still running raises a retryable error, and the
        workflow's retry policy (backoff 1, the poll interval apart) is the
        polling loop. A trainer that calls back instead is handed this
        activity's task token and the activity completes when it calls."""
        backend = self._backend(job.backend)
        if job.poll_url is None and isinstance(backend, HttpTrainer):
            try:
                await backend.watch(job, activity.info().task_token)
            except FineTuneRefused as error:
                raise ApplicationError(
                    str(error), type=ErrorType.fine_tune_failed, non_retryable=True
                ) from error
            beat(Progress(stage="training", detail=f"job {job.job_id}: waiting"))
            activity.raise_complete_async()
        state = await backend.look(job)
        if state.events:
            await self.ledger.record_job_events(job.job_id, state.events)
        latest = state.events[-1]["message"] if state.events else ""
        beat(
            Progress(stage="training", detail=f"job {job.job_id} {state.status}: {latest}".strip())
        )
        return await self._settle(job, state)

    async def _settle(self, job: FineTuneJob, state: JobState) -> FineTuneJob:
        if not state.finished:
            # BENIGN: an expected "not yet", logged quietly rather than as a failure.
            raise ApplicationError(
                f"fine-tune job {job.job_id} is {state.status}",
                type=ErrorType.fine_tune_running,
                category=ApplicationErrorCategory.BENIGN,
            )
        await self.ledger.update_training_job(
            job.job_id,
            status=state.status,
            fine_tuned_model=state.fine_tuned_model,
            error=state.error,
        )
        if state.status == "succeeded" and state.fine_tuned_model:
            return job.model_copy(
                update={"status": state.status, "fine_tuned_model": state.fine_tuned_model}
            )
        reason = state.error or (
            "it named no model" if state.status == "succeeded" else state.status
        )
        raise ApplicationError(
            f"fine-tune job {job.job_id} {state.status}: {reason}",
            type=ErrorType.fine_tune_failed,
            non_retryable=True,
        )

    @activity.defn
    @heartbeating
    async def cancel_fine_tune(self, request: CancelFineTuneInput) -> None:
        """Stop the backend's job when its round is cancelled, so nobody pays
        for training a model no one will evaluate."""
        await self._backend(request.backend).cancel(request.job_id)
        await self.ledger.update_training_job(
            request.job_id, status="cancelled", fine_tuned_model=None, error="round cancelled"
        )
