-- A Slack interaction is delivered again when Slack did not see the answer in
-- time (X-Slack-Retry-Num), possibly to another gateway replica. A refusal is
-- kept under the key of the interaction that asked for it, so a redelivery
-- finds it there and neither records nor tells it twice. Attempts from other
-- sources (the operator API) have no key.
ALTER TABLE decision_attempts ADD COLUMN interaction_key text;
CREATE UNIQUE INDEX decision_attempts_interaction_key
    ON decision_attempts (interaction_key) WHERE interaction_key IS NOT NULL;
