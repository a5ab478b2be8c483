-- The decision inbox (issue 14): a reviewer's click is kept here, one row per
-- Slack interaction, before Slack is answered, so an acknowledged click
-- survives the gateway that took it. A dispatcher sends each row to its
-- round's workflow as the `decide` update (a few at a time per round) and
-- marks it dispatched with what the round answered. An undispatched row is
-- claimed for a while (`claimed_until`) by the gateway sending it; once the
-- claim lapses (that gateway died) any gateway takes it over.
CREATE TABLE decision_inbox (
    interaction_key text PRIMARY KEY,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    workflow_id text NOT NULL,
    round_id text NOT NULL,
    request jsonb NOT NULL,
    channel text NOT NULL DEFAULT '',
    received_at timestamptz NOT NULL DEFAULT now(),
    claimed_by text,
    claimed_until timestamptz,
    dispatched_at timestamptz,
    outcome text,
    message text
);
CREATE INDEX decision_inbox_undispatched ON decision_inbox (seq) WHERE dispatched_at IS NULL;
CREATE INDEX decision_inbox_round ON decision_inbox (round_id, seq);
