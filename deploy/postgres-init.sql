-- First-boot initialisation of the stack's PostgreSQL 16 server (deploy/compose.yaml).
--
-- The official postgres image runs this file once, with psql, as the superuser,
-- when the data directory is empty. One server hosts:
--   temporal, temporal_visibility  Temporal's stores; temporalio/auto-setup creates
--                                  and migrates them as the `temporal` role
--   amend                          the ledger, owned by the `amend` role; the
--                                  `migrate` service applies its schema
--
-- No password is written here: psql reads them from the container's environment
-- (TEMPORAL_DB_PASSWORD and LEDGER_DB_PASSWORD, set from deploy/.env).

\set ON_ERROR_STOP on
\set temporal_password ''
\set ledger_password ''
\getenv temporal_password TEMPORAL_DB_PASSWORD
\getenv ledger_password LEDGER_DB_PASSWORD

SELECT :'temporal_password' <> '' AND :'ledger_password' <> '' AS passwords_set \gset
\if :passwords_set
\else
  \echo 'postgres-init.sql: set TEMPORAL_DB_PASSWORD and LEDGER_DB_PASSWORD'
  SELECT 1/0;
\endif

-- Temporal: auto-setup creates its two databases, so the role may create databases.
CREATE ROLE temporal LOGIN CREATEDB PASSWORD :'temporal_password';

-- The ledger: its own role and database; the role owns the database, so it owns
-- the public schema's privileges there (PostgreSQL 15+) and can run migrations.
CREATE ROLE amend LOGIN PASSWORD :'ledger_password';
CREATE DATABASE amend OWNER amend;
REVOKE ALL ON DATABASE amend FROM PUBLIC;
