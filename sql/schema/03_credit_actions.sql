-- Phase 3.5 columns on public.credit_actions: credits required per pool, per unit of quantity. The values come from
-- config (guardian:actions) through the catalogue component; an action requiring nothing is all zeros.
-- Additive, no rewrite, CHECKs NOT VALID then validated, idempotent, retained on delete and on rollback.
ALTER TABLE public.credit_actions
  ADD COLUMN IF NOT EXISTS ai_credits_required integer NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS whatsapp_credits_required integer NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS email_credits_required integer NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS sms_credits_required integer NOT NULL DEFAULT 0;

DO $$
DECLARE
  c record;
BEGIN
  FOR c IN
    SELECT * FROM (VALUES
      ('credit_actions_ai_credits_required_nonnegative', 'ai_credits_required >= 0'),
      ('credit_actions_whatsapp_credits_required_nonnegative', 'whatsapp_credits_required >= 0'),
      ('credit_actions_email_credits_required_nonnegative', 'email_credits_required >= 0'),
      ('credit_actions_sms_credits_required_nonnegative', 'sms_credits_required >= 0')
    ) AS v(name, expr)
  LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                    WHERE conrelid = 'public.credit_actions'::regclass AND conname = c.name) THEN
      EXECUTE format('ALTER TABLE public.credit_actions ADD CONSTRAINT %I CHECK (%s) NOT VALID', c.name, c.expr);
    END IF;
  END LOOP;
END
$$;

-- Validation (a scan) is its own step, sql/schema/05_validate_constraints.sql, outside this file's lock.
