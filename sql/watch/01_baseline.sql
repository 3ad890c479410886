-- The watch's latency baseline (contract: "Rollback triggers"), recorded in the transaction that installs v2, before
-- the switch is committed: 5 warm-up calls then 25 timed calls of the new consume_credits_rpc, as service_role, on an
-- organization the catalogue can serve, served from its pools as a migrated one is, each in a subtransaction rolled
-- back (nothing is debited or logged). The same
-- call shape the watch times later (sql/watch/02_calls.sql), so the two are comparable. Stored in
-- guardian.function_baselines, where `npm run watch` finds it. No organization or action: nothing recorded, and the
-- watch refuses, saying so.
DO $baseline$
DECLARE
  v_org uuid;
  v_action text;
  v_t0 timestamptz;
  v_ms double precision[] := '{}';
  i integer;
BEGIN
  SELECT oc.organization_id INTO v_org FROM public.organization_credits oc
   WHERE EXISTS (SELECT 1 FROM public.organizations o WHERE o.id = oc.organization_id)
   ORDER BY oc.organization_id LIMIT 1;
  SELECT a.action_type INTO v_action FROM public.credit_actions a ORDER BY a.credits_cost, a.action_type LIMIT 1;
  IF v_org IS NULL OR v_action IS NULL THEN
    RETURN;
  END IF;
  FOR i IN 1..30 LOOP
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
