-- The Phase 3.5 allocation rule, in one place. The backfill, the write trigger and the verification all call it.
--   * plan_name matched after trim and lower-case against guardian.plan_catalogue: every *_total and *_available is
--     the plan's allocation;
--   * any other plan (free, custom, '', unknown): *_total = floor(total_credits x share) and
--     *_available = floor(credits_remaining x share), the units lost to rounding go to ai, so the pools add up
--     exactly to total_credits and credits_remaining. A negative value counts as 0 and is flagged (clamped).
CREATE OR REPLACE FUNCTION guardian.allocate_pools(
  p_plan_name text, p_total_credits integer, p_credits_remaining integer,
  OUT rule text,
  OUT ai_total integer, OUT ai_available integer,
  OUT whatsapp_total integer, OUT whatsapp_available integer,
  OUT email_total integer, OUT email_available integer,
  OUT sms_total integer, OUT sms_available integer,
  OUT clamped boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  p guardian.plan_catalogue%ROWTYPE;
  s guardian.allocation_split%ROWTYPE;
  t bigint;
  r bigint;
BEGIN
  SELECT * INTO p FROM guardian.plan_catalogue WHERE plan_name = lower(btrim(p_plan_name, E' \t\r\n'));
  IF FOUND THEN
    rule := 'plan:' || p.plan_name;
    ai_total := p.ai; ai_available := p.ai;
    whatsapp_total := p.whatsapp; whatsapp_available := p.whatsapp;
    email_total := p.email; email_available := p.email;
    sms_total := p.sms; sms_available := p.sms;
    clamped := false;
    RETURN;
  END IF;

  SELECT * INTO s FROM guardian.allocation_split LIMIT 1;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'guardian.allocation_split is empty: the catalogue component has not been applied';
  END IF;
  rule := 'split';
  clamped := coalesce(p_total_credits, 0) < 0 OR coalesce(p_credits_remaining, 0) < 0;
  t := greatest(coalesce(p_total_credits, 0), 0);
  r := greatest(coalesce(p_credits_remaining, 0), 0);
  whatsapp_total := floor(t * s.whatsapp);
  email_total := floor(t * s.email);
  sms_total := floor(t * s.sms);
  ai_total := t - whatsapp_total - email_total - sms_total;
  whatsapp_available := floor(r * s.whatsapp);
  email_available := floor(r * s.email);
  sms_available := floor(r * s.sms);
  ai_available := r - whatsapp_available - email_available - sms_available;
END
$fn$;

REVOKE ALL ON FUNCTION guardian.allocate_pools(text, integer, integer) FROM PUBLIC;
