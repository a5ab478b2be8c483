-- Evidence behind proposals, what the model was shown of it, and what every
-- proposal went through before a person saw it (issue 3).

CREATE TABLE evidence (
    round_id      text NOT NULL REFERENCES rounds (round_id),
    evidence_id   text NOT NULL,
    kind          text NOT NULL,
    summary       text NOT NULL,
    principles    jsonb NOT NULL,
    detail        jsonb NOT NULL,
    source        text NOT NULL,                -- file path, or 'round:<id>' for feedback
    tokens        integer NOT NULL,
    suspicious    boolean NOT NULL,             -- reads like instructions to the model
    chunk         integer,                      -- the model call it went into; null: left out
    selection     text NOT NULL,                -- why it is in that chunk or left out
    position      integer NOT NULL,
    PRIMARY KEY (round_id, evidence_id)
);
CREATE INDEX evidence_round_chunk ON evidence (round_id, chunk);

CREATE TABLE evidence_selections (
    round_id        text PRIMARY KEY REFERENCES rounds (round_id),
    budget_tokens   integer NOT NULL,
    chunks          integer NOT NULL,
    total_items     integer NOT NULL,
    selected_items  integer NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Generation facts of a proposal: the model calls behind it and their results.
CREATE TABLE proposal_generation (
    proposal_id   text PRIMARY KEY REFERENCES proposals (proposal_id),
    request_ids   jsonb NOT NULL,
    prompt_versions jsonb NOT NULL,
    chunk         integer,
    strict_review boolean NOT NULL,
    conflicts     jsonb NOT NULL,
    impact        jsonb
);

CREATE TABLE proposal_evidence (
    proposal_id   text NOT NULL REFERENCES proposals (proposal_id),
    round_id      text NOT NULL,
    evidence_id   text NOT NULL,
    PRIMARY KEY (proposal_id, evidence_id),
    FOREIGN KEY (round_id, evidence_id) REFERENCES evidence (round_id, evidence_id)
);

-- Every check's verdict, for kept proposals (subject = proposal id) and for
-- drafts that never reached a reviewer (subject = their draft id).
CREATE TABLE proposal_checks (
    round_id      text NOT NULL REFERENCES rounds (round_id),
    subject       text NOT NULL,
    position      integer NOT NULL,
    check_name    text NOT NULL,
    verdict       text NOT NULL,
    detail        text NOT NULL,
    PRIMARY KEY (round_id, subject, position)
);

CREATE TABLE dropped_drafts (
    round_id      text NOT NULL REFERENCES rounds (round_id),
    draft_id      text NOT NULL,
    draft         jsonb NOT NULL,
    reason        text NOT NULL,
    request_ids   jsonb NOT NULL,
    PRIMARY KEY (round_id, draft_id)
);
