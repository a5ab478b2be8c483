-- Operators and dashboards: API tokens, the override mark on decisions, and
-- views made for dashboard tools (Grafana, the gateway's pages, analysts).
-- Views read only tables of 0001, so they hold whatever other migrations add.

-- Bearer tokens of the HTTP API. Only a SHA-256 of each token is kept: a
-- leaked table does not leak a token.
CREATE TABLE api_tokens (
    token_id    text PRIMARY KEY,              -- public part, shown in lists
    name        text NOT NULL,
    role        text NOT NULL CHECK (role IN ('operator', 'viewer')),
    token_hash  text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- Who imported a version (versions made by rounds name their round instead).
ALTER TABLE constitution_versions ADD COLUMN imported_by text;

-- An operator deciding in the reviewers' stead is recorded as such.
ALTER TABLE decisions ADD COLUMN override boolean NOT NULL DEFAULT false;

CREATE INDEX rounds_created_at ON rounds (created_at DESC, round_id);
CREATE INDEX rounds_base_version ON rounds (base_version);
CREATE INDEX decisions_proposal ON decisions (proposal_id, decided_at);
CREATE INDEX proposals_round ON proposals (round_id, position);

-- Rounds by state, for a pie or bar chart.
CREATE VIEW dash_rounds_by_state AS
SELECT state, count(*)::integer AS rounds, max(updated_at) AS last_change
FROM rounds
GROUP BY state;

-- When each proposal was first posted (the start of its review).
CREATE VIEW dash_proposal_posted AS
SELECT t.round_id, substr(t.entity, 10) AS proposal_id, min(t.at) AS posted_at
FROM transitions t
WHERE t.entity LIKE 'proposal:%' AND t.to_state = 'posted'
GROUP BY t.round_id, t.entity;

-- Decision latency: from a proposal's posting to its first decision.
CREATE VIEW dash_decision_latency AS
SELECT p.round_id, p.proposal_id, p.kind, pp.posted_at, d.decided_at,
       d.kind AS decision, d.reviewer, d.override,
       extract(epoch FROM d.decided_at - pp.posted_at)::double precision AS latency_s
FROM proposals p
JOIN dash_proposal_posted pp ON pp.proposal_id = p.proposal_id
JOIN LATERAL (
    SELECT * FROM decisions x WHERE x.proposal_id = p.proposal_id
    ORDER BY x.decided_at LIMIT 1
) d ON true;

-- Proposals waiting for people, and for how long.
CREATE VIEW dash_pending_proposals AS
SELECT p.round_id, p.proposal_id, p.kind, p.target, pp.posted_at,
       extract(epoch FROM now() - pp.posted_at)::double precision AS age_s
FROM proposals p
JOIN dash_proposal_posted pp ON pp.proposal_id = p.proposal_id
WHERE p.state = 'posted';

-- Evaluation metrics per constitution version (candidate and baseline).
CREATE VIEW dash_evaluations AS
SELECT e.constitution_version, e.round_id, e.candidate_model, e.baseline_model,
       (e.candidate ->> 'harm_rate')::double precision AS harm_rate,
       (e.baseline ->> 'harm_rate')::double precision AS baseline_harm_rate,
       (e.candidate ->> 'overrefusal_rate')::double precision AS overrefusal_rate,
       (e.baseline ->> 'overrefusal_rate')::double precision AS baseline_overrefusal_rate,
       (e.candidate ->> 'awareness_gap')::double precision AS awareness_gap,
       e.passed, e.created_at
FROM evaluations e;

-- Every version of every principle, with what changed from the version before.
CREATE VIEW dash_principle_versions AS
SELECT p.principle_id, p.version, p.title, p.text, p.protected, v.round_id, v.created_at,
       CASE
           WHEN lag(p.version) OVER w IS NULL THEN 'added'
           WHEN lag(p.version) OVER w <> p.version - 1 THEN 'added'
           WHEN lag(p.text) OVER w IS DISTINCT FROM p.text
             OR lag(p.title) OVER w IS DISTINCT FROM p.title THEN 'revised'
           ELSE 'unchanged'
       END AS change
FROM principles p
JOIN constitution_versions v ON v.number = p.version
WINDOW w AS (PARTITION BY p.principle_id ORDER BY p.version);
