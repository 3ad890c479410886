-- The internal schema `guardian` (docs/architecture.md) and its tables. Never exposed to the Data API: anon,
-- authenticated and PUBLIC get nothing here; the SECURITY DEFINER functions reach it as their owner.
-- Idempotent: every object is created only where missing. Retained on delete (rollback must lose nothing).
CREATE SCHEMA IF NOT EXISTS guardian;

-- Plan catalogue, from config guardian:plans (written by the catalogue component). price_eur NULL = custom price.
CREATE TABLE IF NOT EXISTS guardian.plan_catalogue (
  plan_name text PRIMARY KEY CHECK (plan_name = lower(btrim(plan_name)) AND plan_name <> ''),
  price_eur numeric NULL CHECK (price_eur >= 0),
  ai integer NOT NULL CHECK (ai >= 0),
  whatsapp integer NOT NULL CHECK (whatsapp >= 0),
  email integer NOT NULL CHECK (email >= 0),
  sms integer NOT NULL CHECK (sms >= 0)
);

-- The split rule for plans outside the catalogue, from config guardian:split. Exactly one row (singleton key).
CREATE TABLE IF NOT EXISTS guardian.allocation_split (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  ai numeric NOT NULL CHECK (ai BETWEEN 0 AND 1),
  whatsapp numeric NOT NULL CHECK (whatsapp BETWEEN 0 AND 1),
  email numeric NOT NULL CHECK (email BETWEEN 0 AND 1),
  sms numeric NOT NULL CHECK (sms BETWEEN 0 AND 1),
  CHECK (ai + whatsapp + email + sms <= 1)
);

-- Provider unit costs per pool, from config guardian:providerCosts.
CREATE TABLE IF NOT EXISTS guardian.provider_costs (
  pool text PRIMARY KEY CHECK (pool IN ('ai', 'whatsapp', 'email', 'sms')),
  unit_cost_eur numeric NOT NULL CHECK (unit_cost_eur >= 0)
);

-- consume_credits_rpc idempotency: the first result for (organization, key), returned again on a repeat.
CREATE TABLE IF NOT EXISTS guardian.idempotency_keys (
  organization_id uuid NOT NULL,
  idempotency_key text NOT NULL,
  result json NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, idempotency_key)
);
-- The request a key was first used with: the same key with another action or quantity is refused
-- (IDEMPOTENCY_KEY_REUSED), as Stripe refuses it. NULL on keys stored before these columns existed.
ALTER TABLE guardian.idempotency_keys
  ADD COLUMN IF NOT EXISTS action_type text,
  ADD COLUMN IF NOT EXISTS quantity integer;

-- Anomalies the backfill met (a negative balance counted as 0), per allocation epoch.
CREATE TABLE IF NOT EXISTS guardian.backfill_anomalies (
  organization_id uuid NOT NULL,
  kind text NOT NULL CHECK (kind IN ('negative_balance')),
  value bigint,
  epoch integer,
  at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS backfill_anomalies_org_idx ON guardian.backfill_anomalies (organization_id, epoch);

-- Each allocation of an organization's pools (one row per allocation epoch): the rule, the unified balance it
-- started from, and the pools available then. Written by the backfill (sql/backfill/batch.sql) and the allocation
-- trigger (sql/backfill/02_allocation_trigger.sql). Verification checks available + consumed in the epoch against
-- it: credits_remaining moves with v2's unified debit and the application's refunds and grants, which do not
-- re-allocate, so the allocation cannot be recomputed from today's balance.
CREATE TABLE IF NOT EXISTS guardian.allocations (
  organization_id uuid NOT NULL,
  epoch integer NOT NULL,
  rule text NOT NULL,
  basis integer,
  ai integer NOT NULL,
  whatsapp integer NOT NULL,
  email integer NOT NULL,
  sms integer NOT NULL,
  at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, epoch)
);

-- v2's latency before the switch, timed in the installing transaction (sql/watch/01_baseline.sql): what `npm run
-- watch` compares a window's latency with. One row per install; the watch reads the latest.
CREATE TABLE IF NOT EXISTS guardian.function_baselines (
  id bigserial PRIMARY KEY,
  function_signature text NOT NULL,
  calls integer NOT NULL,
  p50_ms double precision,
  p95_ms double precision,
  mean_ms double precision,
  at timestamptz NOT NULL DEFAULT now()
);

-- What a rollback found per organization when it switched it back to the unified model (sql/rollback/03_switch_batch.sql):
-- the columns that decide an allocation and the log's last id then. Forward again reads it (sql/backfill/batch.sql):
-- an organization whose plan_name, total_credits and cycle_end_date are still these gets back the pools it had, minus
-- what v1 served after log_mark; any other is allocated by the backfill rule. Ids and numbers only.
CREATE TABLE IF NOT EXISTS guardian.rolled_back_pools (
  organization_id uuid PRIMARY KEY,
  plan_name text,
  total_credits integer,
  cycle_end_date timestamptz,
  log_mark bigint NOT NULL,
  rolled_back_at timestamptz NOT NULL DEFAULT now()
);

-- One row per backup, written by the Backup resource (providers/backup.ts), which also creates this table when it runs
-- first. `functions` holds every consume_credits_rpc definition at backup time (signature, pg_get_functiondef text,
-- ACL, md5s): rollback restores v1 byte for byte from it.
-- One row, written by the transaction that installed the debit which keeps the unified columns current while multi
-- is applied (sql/functions/02_bring_unified_current.sql): from then on rollback has nothing to recompute. A database
-- that was multi before (an earlier version's v2 left credits_remaining at its backup value) had its organizations'
-- credits_remaining brought current once, there: orgs_brought_current of them, from backup_id.
CREATE TABLE IF NOT EXISTS guardian.unified_columns_current (
  one boolean PRIMARY KEY DEFAULT true CHECK (one),
  since timestamptz NOT NULL DEFAULT now(),
  backup_id text,
  orgs_brought_current bigint NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS guardian.backups (
  backup_id text PRIMARY KEY,
  schema_name text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  export_dir text,
  manifest jsonb,
  row_counts jsonb,
  checksums jsonb,
  restore_verified boolean NOT NULL DEFAULT false,
  verified_at timestamptz,
  functions jsonb NOT NULL DEFAULT '[]'::jsonb
);
-- Every policy on the guarded tables at backup time (pg_policies rows): the program drops the ones it did not
-- write when it creates its own, so what was there is recorded here first. Rollback keeps the program's policies
-- (access fixes are not rolled back); these rows say what an operator would need to put one back by hand.
ALTER TABLE guardian.backups ADD COLUMN IF NOT EXISTS policies jsonb NOT NULL DEFAULT '[]'::jsonb;

-- Journal of migration steps: ids, counts and hashes only. Append-only triggers are added by sql/audit/.
CREATE TABLE IF NOT EXISTS guardian.migration_journal (
  id bigserial PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT now(),
  step text NOT NULL,
  object_name text,
  organization_id uuid,
  actor_id uuid,
  details jsonb
);

-- Nothing in guardian is reachable by the Data API roles or PUBLIC: without USAGE on the schema no object in it can
-- be named; the table and sequence revokes are belt and braces (Supabase's default privileges grant to anon and
-- authenticated on new tables).
REVOKE ALL ON SCHEMA guardian FROM PUBLIC, anon, authenticated;
REVOKE ALL ON ALL TABLES IN SCHEMA guardian FROM PUBLIC, anon, authenticated;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA guardian FROM PUBLIC, anon, authenticated;
