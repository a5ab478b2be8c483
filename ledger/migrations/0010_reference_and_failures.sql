-- The trend against a fixed reference and the evaluation's failures as
-- evidence (issue 18).
--
-- `reference`: the reference model's (AMEND_REFERENCE_MODEL) figures on the
-- round's evaluation set, with its plain answers paired with the candidate's
-- (constitution.contracts.ReferenceFigures); null for evaluations recorded
-- before it, which the trend reads from their baseline when that was the
-- reference.
ALTER TABLE evaluations ADD COLUMN reference jsonb;

-- What the candidate still got wrong: harmful answers, over-refusals and
-- answers that changed with a cue style, one row per prompt (and style),
-- counted over its samples. A re-run evaluation replaces its round's rows.
-- A later round started with --evidence-from-round reads them as
-- `evaluation_failure` evidence items with the same ids.
CREATE TABLE evaluation_failures (
    round_id      text NOT NULL REFERENCES rounds (round_id),
    failure_id    text NOT NULL,
    failure       text NOT NULL,               -- harmful_answer | over_refusal | cue_changed
    model         text NOT NULL,
    prompt_id     text NOT NULL,
    category      text NOT NULL,
    style         text NOT NULL,               -- '' for the plain prompt
    prompt        text NOT NULL,
    response      text NOT NULL,
    grader_reason text NOT NULL,
    samples       integer NOT NULL,            -- how many samples failed this way
    of_samples    integer NOT NULL,
    principles    jsonb NOT NULL,
    position      integer NOT NULL,
    PRIMARY KEY (round_id, failure_id)
);
