-- The gate with uncertainty (issue 18): each evaluation keeps its outcome
-- (passed, failed or inconclusive), the paired tests with their intervals and
-- p-values, each adopted amendment's measured effect, and the settings the
-- answers were drawn with (samples per prompt, temperature, significance).
-- Rates with n and intervals, the gap per cue style and the rates per
-- category live in the candidate and baseline figures (jsonb) already.
ALTER TABLE evaluations ADD COLUMN outcome text;
ALTER TABLE evaluations ADD COLUMN tests jsonb NOT NULL DEFAULT '[]';
ALTER TABLE evaluations ADD COLUMN attribution jsonb NOT NULL DEFAULT '[]';
ALTER TABLE evaluations ADD COLUMN settings jsonb NOT NULL DEFAULT '{}';
