-- Phase 3.5 columns on public.organization_credits: the four pools (total and available) and which model serves
-- the organization. Additive only: ADD COLUMN ... NOT NULL DEFAULT <constant> is a catalogue change (no table
-- rewrite since PostgreSQL 11). CHECKs are added NOT VALID (no scan under the ACCESS EXCLUSIVE lock), then validated.
-- Idempotent. Retained on delete and on rollback.
ALTER TABLE public.organization_credits
  ADD COLUMN IF NOT EXISTS ai_credits_total integer NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS ai_credits_available integer NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS whatsapp_credits_total integer NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS whatsapp_credits_available integer NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS email_credits_total integer NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS email_credits_available integer NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS sms_credits_total integer NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS sms_credits_available integer NOT NULL DEFAULT 0,
  -- 'unified' (served from credits_remaining, as v1) or 'multi' (served from the pools); flipped by the backfill.
  ADD COLUMN IF NOT EXISTS credit_model text NOT NULL DEFAULT 'unified',
  -- Bumped at every allocation; consumption is counted per epoch (docs/architecture.md, invariants).
  ADD COLUMN IF NOT EXISTS allocation_epoch integer NOT NULL DEFAULT 0;

DO $$
DECLARE
  c record;
BEGIN
  FOR c IN
    SELECT * FROM (VALUES
      ('organization_credits_ai_credits_available_nonnegative', 'ai_credits_available >= 0'),
      ('organization_credits_whatsapp_credits_available_nonnegative', 'whatsapp_credits_available >= 0'),
      ('organization_credits_email_credits_available_nonnegative', 'email_credits_available >= 0'),
      ('organization_credits_sms_credits_available_nonnegative', 'sms_credits_available >= 0'),
      ('organization_credits_credit_model_known', 'credit_model IN (''unified'', ''multi'')'),
      ('organization_credits_allocation_epoch_nonnegative', 'allocation_epoch >= 0')
    ) AS v(name, expr)
  LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                    WHERE conrelid = 'public.organization_credits'::regclass AND conname = c.name) THEN
      EXECUTE format('ALTER TABLE public.organization_credits ADD CONSTRAINT %I CHECK (%s) NOT VALID', c.name, c.expr);
    END IF;
  END LOOP;
END
$$;

-- Validation (a scan) is its own step, sql/schema/05_validate_constraints.sql, outside this file's lock.
