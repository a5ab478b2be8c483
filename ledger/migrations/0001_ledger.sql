-- The durable, queryable record of every round. The workflow owns a round's
-- state; these tables are what dashboards, audits and the CLI read.

CREATE TABLE constitution_versions (
    number        integer PRIMARY KEY,
    content_hash  text NOT NULL UNIQUE,
    parent_hash   text REFERENCES constitution_versions (content_hash),
    round_id      text,
    retired       jsonb NOT NULL DEFAULT '[]',   -- ids never to be given out again
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE principles (
    version       integer NOT NULL REFERENCES constitution_versions (number),
    position      integer NOT NULL,
    principle_id  text NOT NULL,
    title         text NOT NULL,
    text          text NOT NULL,
    protected     boolean NOT NULL DEFAULT false,
    PRIMARY KEY (version, principle_id),
    UNIQUE (version, position)
);

CREATE TABLE rounds (
    round_id             text PRIMARY KEY,
    workflow_id          text NOT NULL UNIQUE,
    state                text NOT NULL,
    base_version         integer REFERENCES constitution_versions (number),
    result_version       integer REFERENCES constitution_versions (number),
    spec                 jsonb NOT NULL,
    last_sequence        integer NOT NULL DEFAULT 0,
    last_hash            text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rounds_state ON rounds (state);

CREATE TABLE proposals (
    proposal_id     text PRIMARY KEY,
    round_id        text NOT NULL REFERENCES rounds (round_id),
    position        integer NOT NULL,
    state           text NOT NULL,
    kind            text NOT NULL,
    target          text,
    title           text,
    text            text,
    rationale       text NOT NULL,
    evidence        jsonb NOT NULL,
    touches         jsonb NOT NULL,
    prompt_version  text NOT NULL,
    model           text NOT NULL,
    slack_channel   text,
    slack_ts        text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (round_id, position)
);

CREATE TABLE decisions (
    decision_id   text PRIMARY KEY,
    proposal_id   text NOT NULL REFERENCES proposals (proposal_id),
    round_id      text NOT NULL REFERENCES rounds (round_id),
    kind          text NOT NULL,
    reviewer      text NOT NULL,
    text          text,
    comment       text,
    decided_at    timestamptz NOT NULL
);
CREATE INDEX decisions_round ON decisions (round_id);

-- Refused decisions never reach Temporal's history, so they are kept here.
CREATE TABLE decision_attempts (
    attempt_id    bigserial PRIMARY KEY,
    round_id      text NOT NULL,
    proposal_id   text,
    reviewer      text NOT NULL,
    kind          text,
    outcome       text NOT NULL,
    reason        text NOT NULL,
    source        text NOT NULL,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX decision_attempts_round ON decision_attempts (round_id);

CREATE TABLE transitions (
    transition_id  text PRIMARY KEY,           -- <workflow id>:<sequence>
    round_id       text NOT NULL REFERENCES rounds (round_id),
    sequence       integer NOT NULL,
    entity         text NOT NULL,
    from_state     text,
    to_state       text NOT NULL,
    actor          text NOT NULL,
    reason         text NOT NULL,
    data           jsonb NOT NULL,
    at             timestamptz NOT NULL,
    prev_hash      text,
    hash           text NOT NULL,
    UNIQUE (round_id, sequence)
);
CREATE INDEX transitions_at ON transitions (at);

CREATE TABLE training_jobs (
    job_id          text PRIMARY KEY,
    round_id        text NOT NULL REFERENCES rounds (round_id),
    backend         text NOT NULL,
    base_model      text NOT NULL,
    method          text NOT NULL,
    dataset_uri     text NOT NULL,
    dataset_hash    text NOT NULL,
    examples        integer NOT NULL,
    status          text NOT NULL,
    fine_tuned_model text,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE evaluations (
    round_id              text PRIMARY KEY REFERENCES rounds (round_id),
    constitution_version  integer NOT NULL REFERENCES constitution_versions (number),
    candidate_model       text NOT NULL,
    baseline_model        text NOT NULL,
    candidate             jsonb NOT NULL,
    baseline              jsonb NOT NULL,
    passed                boolean NOT NULL,
    reasons               jsonb NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now()
);
