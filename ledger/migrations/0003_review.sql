-- Slack posts keyed by what they are (a round's reminder n in a proposal's
-- thread, its digest n, its summary), so a retried activity finds the post it
-- already made instead of posting it twice.
CREATE TABLE slack_posts (
    post_key   text PRIMARY KEY,
    round_id   text NOT NULL,
    channel    text NOT NULL,
    ts         text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX slack_posts_round ON slack_posts (round_id);
