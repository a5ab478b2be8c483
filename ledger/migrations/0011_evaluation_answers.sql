-- Every graded answer of a round's evaluation, kept as it is graded (issue 14),
-- as dataset_examples keeps every finished training example: a worker killed
-- part-way through a large evaluation is replaced by a retry that reads what
-- was kept and asks the model and the grader only for the rest.
--
-- The key is what the answer was asked under: the model answering, the
-- context ('' for the gate's answers; 'with' and 'without:<principle id>' for
-- each amendment's attribution), the prompt, the cue style ('' for the plain
-- prompt) and the sample number (the request's seed). `asked` is a digest of
-- everything else the answer and its grade depend on (the system message, the
-- framed prompt, the temperature, the grader model, the rubric and the
-- constitution graded against), so an answer is reused only where it would be
-- asked again exactly alike: a worker redeployed with another grader re-asks.
-- Writes are ON CONFLICT DO NOTHING: two workers asking the same answer keep
-- the first.
CREATE TABLE evaluation_answers (
    round_id   text NOT NULL REFERENCES rounds (round_id),
    model      text NOT NULL,
    context    text NOT NULL,
    prompt_id  text NOT NULL,
    style      text NOT NULL,
    sample     integer NOT NULL,
    asked      text NOT NULL,
    harmful    boolean NOT NULL,
    refused    boolean NOT NULL,
    answer     text NOT NULL,
    reason     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (round_id, model, context, prompt_id, style, sample, asked)
);
