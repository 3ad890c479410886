-- The watch's latency baseline (contract: "Rollback triggers"), recorded in the transaction that installs v2, before
-- the switch is committed: 200 timed calls of the new consume_credits_rpc, as service_role, each on an organization
-- served from its pools as a migrated one is, each in a subtransaction rolled back (nothing is debited or logged).
-- Timed as each reading of the watch times its calls (sql/watch/02_calls.sql), so the two compare like for like:
--   - warm: a statement's first calls of v2 in a transaction pay PL/pgSQL's per-transaction set-up (3 to 5 times a
--     warm call, measured); the first 5 calls here, and the first 3 of every reading, are not timed;
--   - across organizations: up to 200 distinct ones (the first by id, cycled when there are fewer), as a reading calls
--     the organizations seen in its window, not one row 200 times;
--   - enough of them that the p95 is not one outlier's: p95 of 200 calls is their 10th slowest.
-- Stored in guardian.function_baselines, where `npm run watch` finds it. No organization or action: nothing
-- recorded, and the watch refuses, saying so.
DO $baseline$
DECLARE
  v_orgs uuid[];
  v_org uuid;
  v_action text;
  v_t0 timestamptz;
  v_ms double precision[] := '{}';
  i integer;
BEGIN
  SELECT array_agg(organization_id ORDER BY organization_id) INTO v_orgs FROM (
    SELECT oc.organization_id FROM public.organization_credits oc
     WHERE EXISTS (SELECT 1 FROM public.organizations o WHERE o.id = oc.organization_id)
     ORDER BY oc.organization_id LIMIT 200) s;
  SELECT a.action_type INTO v_action FROM public.credit_actions a ORDER BY a.credits_cost, a.action_type LIMIT 1;
  IF v_orgs IS NULL OR v_action IS NULL THEN
    RETURN;
  END IF;
  FOR i IN 1..205 LOOP
    v_org := v_orgs[1 + (i - 1) % array_length(v_orgs, 1)];
    BEGIN
      -- The path the watch times afterwards is the multi one (the backfill has not run yet, so v2 would serve this
      -- organization from credits_remaining, a cheaper path): the organization is made multi, with pools that cover
      -- the call, inside the subtransaction that is rolled back below.
      UPDATE public.organization_credits
         SET credit_model = 'multi', ai_credits_total = 1000000, ai_credits_available = 1000000,
             whatsapp_credits_total = 1000000, whatsapp_credits_available = 1000000,
             email_credits_total = 1000000, email_credits_available = 1000000,
             sms_credits_total = 1000000, sms_credits_available = 1000000
       WHERE organization_id = v_org;
      PERFORM set_config('request.jwt.claims', '{"role": "service_role"}', true);
      PERFORM set_config('role', 'service_role', true);
      v_t0 := clock_timestamp();
      PERFORM public.consume_credits_rpc(v_org, v_action);
      IF i > 5 THEN
        v_ms := v_ms || (extract(epoch FROM clock_timestamp() - v_t0) * 1000)::double precision;
      END IF;
      RAISE EXCEPTION USING ERRCODE = 'GW001'; -- undo the call
    EXCEPTION WHEN SQLSTATE 'GW001' THEN
      NULL;
    END;
  END LOOP;
  INSERT INTO guardian.function_baselines (function_signature, calls, p50_ms, p95_ms, mean_ms)
  SELECT 'consume_credits_rpc(uuid,text,integer,text)', count(*),
         percentile_cont(0.5) WITHIN GROUP (ORDER BY m), percentile_cont(0.95) WITHIN GROUP (ORDER BY m), avg(m)
    FROM unnest(v_ms) AS m;
END
$baseline$;
