-- While Phase 3.5 is applied, rows written by the application end up migrated by the same rule:
--   * a new organization_credits row is allocated and served by the multi model at once;
--   * a migrated row whose plan_name, total_credits or cycle_end_date changes (an upgrade, a downgrade, a new cycle)
--     is re-allocated, and its allocation_epoch is bumped (consumption is counted per epoch);
--   * a change of credits_remaining alone (v2's own unified debit, a refund, a grant) leaves the pools as they are
--     (contract: "The application around the credits keeps working"): were it to re-allocate, every call of v2, which
--     also takes its unified cost from credits_remaining, would refill the pools.
-- Rows still in the unified model are left to the backfill, which reads their current values when it flips them.
-- SECURITY DEFINER: the application writes these rows as service_role (signups, upgrades, cycle resets), and the rule
-- lives in schema guardian, which no Data API role may use. The trigger runs the rule as its owner, for any writer.
-- search_path ends with pg_temp (every name is qualified), so a writer's temporary objects cannot stand in.
CREATE OR REPLACE FUNCTION guardian.allocate_on_write() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  a record;
BEGIN
  IF TG_OP = 'UPDATE' THEN
    IF NEW.credit_model <> 'multi' OR OLD.credit_model <> 'multi' THEN
      RETURN NEW;
    END IF;
    IF NEW.plan_name IS NOT DISTINCT FROM OLD.plan_name
       AND NEW.total_credits IS NOT DISTINCT FROM OLD.total_credits
       AND NEW.cycle_end_date IS NOT DISTINCT FROM OLD.cycle_end_date THEN
      RETURN NEW;
    END IF;
  END IF;
  a := guardian.allocate_pools(NEW.plan_name, NEW.total_credits, NEW.credits_remaining);
  NEW.ai_credits_total := a.ai_total;             NEW.ai_credits_available := a.ai_available;
  NEW.whatsapp_credits_total := a.whatsapp_total; NEW.whatsapp_credits_available := a.whatsapp_available;
  NEW.email_credits_total := a.email_total;       NEW.email_credits_available := a.email_available;
  NEW.sms_credits_total := a.sms_total;           NEW.sms_credits_available := a.sms_available;
  NEW.credit_model := 'multi';
  NEW.allocation_epoch := coalesce(NEW.allocation_epoch, 0) + 1;
  INSERT INTO guardian.allocations (organization_id, epoch, rule, basis, ai, whatsapp, email, sms)
  VALUES (NEW.organization_id, NEW.allocation_epoch, CASE WHEN a.rule = 'split' THEN 'split' ELSE substr(a.rule, 6) END,
          NEW.credits_remaining, a.ai_available, a.whatsapp_available, a.email_available, a.sms_available)
  ON CONFLICT (organization_id, epoch) DO UPDATE
    SET rule = EXCLUDED.rule, basis = EXCLUDED.basis, ai = EXCLUDED.ai, whatsapp = EXCLUDED.whatsapp,
        email = EXCLUDED.email, sms = EXCLUDED.sms, at = now();
  IF a.clamped THEN
    INSERT INTO guardian.backfill_anomalies (organization_id, kind, value, epoch)
    VALUES (NEW.organization_id, 'negative_balance', least(NEW.credits_remaining, NEW.total_credits), NEW.allocation_epoch);
  END IF;
  RETURN NEW;
END
$fn$;

REVOKE ALL ON FUNCTION guardian.allocate_on_write() FROM PUBLIC, anon, authenticated;

DROP TRIGGER IF EXISTS guardian_allocate_on_write ON public.organization_credits;
CREATE TRIGGER guardian_allocate_on_write
  BEFORE INSERT OR UPDATE OF plan_name, total_credits, cycle_end_date ON public.organization_credits
  FOR EACH ROW EXECUTE FUNCTION guardian.allocate_on_write();
