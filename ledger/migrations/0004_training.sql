-- Retraining: the dataset of each round, example by example, the events of its
-- fine-tune job, and evaluation results by constitution version.

-- One row per finished example. The primary key is the example's position in
-- the round's prompt list, so a resumed or retried generation can neither lose
-- an example nor write one twice; the drawn principle is kept with each.
CREATE TABLE dataset_examples (
    round_id      text NOT NULL REFERENCES rounds (round_id),
    position      integer NOT NULL,
    prompt_id     text NOT NULL,
    principle_id  text NOT NULL,
    method        text NOT NULL,
    example       jsonb NOT NULL,
    -- Set when the example teaches nothing (a preference pair of two equal
    -- answers): kept so it is not generated again, left out of the file.
    skipped       text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (round_id, position)
);

-- The finished, content-addressed dataset of a round.
CREATE TABLE datasets (
    round_id              text PRIMARY KEY REFERENCES rounds (round_id),
    constitution_version  integer NOT NULL REFERENCES constitution_versions (number),
    method                text NOT NULL,
    uri                   text NOT NULL,
    sha256                text NOT NULL,
    manifest_uri          text,
    examples              integer NOT NULL,
    skipped               integer NOT NULL DEFAULT 0,
    prompt_set            text NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE training_job_events (
    job_id      text NOT NULL REFERENCES training_jobs (job_id),
    event_id    text NOT NULL,
    level       text NOT NULL,
    message     text NOT NULL,
    data        jsonb NOT NULL DEFAULT '{}',
    at          timestamptz NOT NULL,
    PRIMARY KEY (job_id, event_id)
);

-- An HTTP trainer's job may name where its status is read.
ALTER TABLE training_jobs ADD COLUMN poll_url text;

ALTER TABLE evaluations ADD COLUMN rubric_version text;
ALTER TABLE evaluations ADD COLUMN prompt_set text;

-- Harm, over-refusal and awareness gap by constitution version, for plotting
-- the trend across versions.
CREATE VIEW evaluation_trend AS
SELECT e.constitution_version,
       e.round_id,
       e.candidate_model,
       e.baseline_model,
       (e.candidate ->> 'harm_rate')::float8        AS candidate_harm_rate,
       (e.baseline ->> 'harm_rate')::float8         AS baseline_harm_rate,
       (e.candidate ->> 'overrefusal_rate')::float8 AS candidate_overrefusal_rate,
       (e.baseline ->> 'overrefusal_rate')::float8  AS baseline_overrefusal_rate,
       (e.candidate ->> 'awareness_gap')::float8    AS candidate_awareness_gap,
       e.passed,
       e.rubric_version,
       e.created_at
FROM evaluations e
ORDER BY e.constitution_version, e.created_at;
