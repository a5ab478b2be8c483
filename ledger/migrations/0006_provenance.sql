-- Rollback and provenance of constitution versions, and what alerts read.
--
-- A revert makes a new version whose principles are an earlier version's, so
-- two versions may now share a content hash. The hash stays indexed (an import
-- looks it up to recognise an earlier version); the foreign key from
-- parent_hash, which needed the hash unique, goes: versions are written only by
-- `ledger.store`, which takes the parent from the latest stored version.
ALTER TABLE constitution_versions DROP CONSTRAINT constitution_versions_parent_hash_fkey;
ALTER TABLE constitution_versions DROP CONSTRAINT constitution_versions_content_hash_key;
CREATE INDEX constitution_versions_content_hash ON constitution_versions (content_hash, number);

-- Who made a version by hand is `imported_by` (0005); with it now: the file or
-- API call it was read from, the version a revert restored, and why.
ALTER TABLE constitution_versions
    ADD COLUMN source text,
    ADD COLUMN reverts integer REFERENCES constitution_versions (number),
    ADD COLUMN reason text;

-- Rounds whose Slack posting is blocked now: the last `slack` transition of a
-- round that has not ended went to `blocked`. The gateway's
-- `amend_rounds_blocked` gauge and Grafana read it.
CREATE VIEW dash_blocked_rounds AS
SELECT r.round_id, r.state, s.reason, s.at AS blocked_since,
       extract(epoch FROM now() - s.at)::double precision AS blocked_s
FROM rounds r
JOIN LATERAL (
    SELECT t.to_state, t.reason, t.at FROM transitions t
    WHERE t.round_id = r.round_id AND t.entity = 'slack'
    ORDER BY t.sequence DESC LIMIT 1
) s ON s.to_state = 'blocked'
WHERE r.state NOT IN ('completed', 'completed_unchanged', 'gate_failed', 'failed', 'cancelled');
