-- Phase 3.5 columns on public.credit_consumption_logs: quantity, per-pool consumed amounts, the acting user, the
-- idempotency key, the model and allocation epoch that served the call, and the error code of a refusal.
-- credits_consumed keeps meaning the unified cost (credits_cost x quantity) of every success, in both models.
-- Additive, no rewrite, CHECKs NOT VALID then validated, idempotent, retained on delete and on rollback.
ALTER TABLE public.credit_consumption_logs
  ADD COLUMN IF NOT EXISTS quantity integer NOT NULL DEFAULT 1,
  ADD COLUMN IF NOT EXISTS ai_consumed integer NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS whatsapp_consumed integer NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS email_consumed integer NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS sms_consumed integer NOT NULL DEFAULT 0,
  -- auth.uid() of the caller; NULL for service calls (no user in the JWT).
  ADD COLUMN IF NOT EXISTS user_id uuid,
  ADD COLUMN IF NOT EXISTS idempotency_key text,
  -- Which model served the call; NULL on rows written before Phase 3.5 (by v1).
  ADD COLUMN IF NOT EXISTS credit_model text,
  ADD COLUMN IF NOT EXISTS allocation_epoch integer,
  -- INSUFFICIENT_CREDITS / TRIAL_EXPIRED on a refused attempt; NULL on a success.
  ADD COLUMN IF NOT EXISTS error_code text;

DO $$
DECLARE
  c record;
BEGIN
  FOR c IN
    SELECT * FROM (VALUES
      ('credit_consumption_logs_quantity_range', 'quantity BETWEEN 1 AND 100000'),
      ('credit_consumption_logs_pools_consumed_nonnegative',
       'ai_consumed >= 0 AND whatsapp_consumed >= 0 AND email_consumed >= 0 AND sms_consumed >= 0'),
      ('credit_consumption_logs_credit_model_known', 'credit_model IN (''unified'', ''multi'')')
    ) AS v(name, expr)
  LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                    WHERE conrelid = 'public.credit_consumption_logs'::regclass AND conname = c.name) THEN
      EXECUTE format('ALTER TABLE public.credit_consumption_logs ADD CONSTRAINT %I CHECK (%s) NOT VALID', c.name, c.expr);
    END IF;
  END LOOP;
END
$$;

-- Validation (a scan) is its own step, sql/schema/05_validate_constraints.sql, outside this file's lock.

