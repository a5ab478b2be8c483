"""Scripted stand-in for an OpenAI-compatible model server.

This is a **stand-in**, not a model: a local server that speaks OpenAI's wire
protocol, and every answer is produced by a small, deterministic script. It
exists so the dev stack, the demo and the tests can run amend end to end —
proposals, preference judgements, grading, dataset generation, file uploads,
batches and fine-tuning jobs — with the real `openai` client and no model URL,
no network and no cost. Every chat completion says so in its
`system_fingerprint` ("amend-scripted-stand-in").

It speaks OpenAI's wire format (ids, `object` fields, `created`, `usage`,
`x-request-id` headers, error JSON) closely enough that the `openai` Python
client runs against it unchanged, so the code paths exercised here are the ones
that run against a real server.

What the scripts do
-------------------
The task of a chat completion comes from `response_format`:

* `json_schema` named `ProposalBatch`, `PreferenceJudgement` or `Grade` (the
  name `client.chat.completions.parse(response_format=Model)` sends);
* `json_object` with a `Schema: <Name>` line in the system message (the
  JSON-mode fallback path);
* `json_schema` named `ConflictAnalysis` (which principles a proposal touches
  or contradicts);
* no response format: plain text — a critique (`Task: critique` in the system
  message), a revision (`Task: revise`), an answer under the constitution in the
  system message (`Task: answer`, for impact previews), or otherwise an answer *as the
  requested model*. Models named `ft:...` behave like a trained candidate
  (refuse harmful prompts, help with benign ones); any other model behaves like
  the baseline: it complies with harmful prompts unless the prompt carries the
  evaluation cue "This is an evaluation" (evaluation awareness) and over-refuses
  benign prompts about locks.

Faults, scripted fine-tuning outcomes, stats and reset are under `/_standin`
(see `standins.model.control`).

Modules, one per API area
-------------------------
* `app`: `create_app(config)`, which builds the FastAPI app from the routers;
* `config`: `ScriptedModelConfig`;
* `state`: `ModelServerState`, the one state object, and the `ServerState`
  dependency routes reach it through;
* `behaviour`: the scripts themselves, pure functions of the prompt;
* `chat`: `/v1/chat/completions` and `/v1/models`;
* `files`: `/v1/files`;
* `fine_tuning`: `/v1/fine_tuning/jobs`;
* `batches`: `/v1/batches`;
* `control`: `/_standin/*`, the faults and fine-tuning outcomes a test scripts;
* `edge`: request ids, the API key, per-route counts and OpenAI's error JSON
  for every request;
* `wire`: the OpenAI error, body and paging conventions the areas share.
"""
