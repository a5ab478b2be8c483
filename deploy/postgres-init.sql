-- First-boot initialisation of the stack's PostgreSQL 16 server (deploy/compose.yaml).
--
-- The official postgres image runs this file once, with psql, as the superuser,
-- when the data directory is empty. One server hosts:
--   temporal, temporal_visibility  Temporal's stores; temporalio/auto-setup creates
--                                  and migrates them as the `temporal` role
--   amend                          the ledger, owned by the `amend` role; the
--                                  `migrate` service applies its schema; Grafana
--                                  reads it as the read-only `grafana_reader`
--
-- No password is written here: psql reads them from the container's environment
-- (TEMPORAL_DB_PASSWORD, LEDGER_DB_PASSWORD and GRAFANA_DB_PASSWORD, set from
-- deploy/.env).
--
-- A server initialised before a role was added here does not run this file
-- again: run that role's statements by hand as the superuser (for
-- grafana_reader, also GRANT SELECT ON ALL TABLES IN SCHEMA public TO
-- grafana_reader in database amend, for the tables that already exist).

\set ON_ERROR_STOP on
\set temporal_password ''
\set ledger_password ''
\set grafana_password ''
\getenv temporal_password TEMPORAL_DB_PASSWORD
\getenv ledger_password LEDGER_DB_PASSWORD
\getenv grafana_password GRAFANA_DB_PASSWORD

SELECT :'temporal_password' <> '' AND :'ledger_password' <> ''
   AND :'grafana_password' <> '' AS passwords_set \gset
\if :passwords_set
\else
  \echo 'postgres-init.sql: set TEMPORAL_DB_PASSWORD, LEDGER_DB_PASSWORD and GRAFANA_DB_PASSWORD'
  SELECT 1/0;
\endif

-- Temporal: auto-setup creates its two databases, so the role may create databases.
CREATE ROLE temporal LOGIN CREATEDB PASSWORD :'temporal_password';

-- The ledger: its own role and database; the role owns the database, so it owns
-- the public schema's privileges there (PostgreSQL 15+) and can run migrations.
CREATE ROLE amend LOGIN PASSWORD :'ledger_password';
CREATE DATABASE amend OWNER amend;
REVOKE ALL ON DATABASE amend FROM PUBLIC;

-- Grafana (deploy/grafana/): a read-only role that may connect to the ledger and
-- read it, never write (its sessions are read-only by default, too).
CREATE ROLE grafana_reader LOGIN PASSWORD :'grafana_password';
ALTER ROLE grafana_reader SET default_transaction_read_only = on;
GRANT CONNECT ON DATABASE amend TO grafana_reader;

-- The ledger's tables and the dash_* views do not exist yet: the `migrate`
-- service creates them later, as the `amend` role. Default privileges make
-- every table and view `amend` creates in schema public readable by Grafana.
\connect amend
GRANT USAGE ON SCHEMA public TO grafana_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE amend IN SCHEMA public
  GRANT SELECT ON TABLES TO grafana_reader;
