-- One reading's synthetic calls (`npm run watch`), created per session in pg_temp: for each (organization, action)
-- pair given, one call of consume_credits_rpc as service_role, timed, in a subtransaction rolled back (nothing is
-- debited or logged). Why synthetic calls: a failing call of the application rolls back its own log row, and
-- pg_stat_statements records only completed statements, so the database keeps no record of errors; and v2 gets no
-- extra subtransaction or write per call (its speed is a target of its own). An answer, success or business refusal
-- (INSUFFICIENT_CREDITS, TRIAL_EXPIRED, FORBIDDEN, ...), is a call that worked; an exception is a failure.
-- The first p_untimed calls count as calls (a failure is a failure) but are not timed: a transaction's first calls of
-- v2 pay PL/pgSQL's per-transaction set-up, and the baseline (sql/watch/01_baseline.sql) times warm calls.
CREATE OR REPLACE FUNCTION pg_temp.guardian_watch_calls(p_orgs uuid[], p_actions text[], p_untimed integer DEFAULT 0)
RETURNS TABLE (calls integer, errors integer, ms double precision[], first_error text)
LANGUAGE plpgsql AS $fn$
DECLARE
  v_t0 timestamptz;
  i integer;
BEGIN
  calls := 0;
  errors := 0;
  ms := '{}';
  FOR i IN 1..coalesce(array_length(p_orgs, 1), 0) LOOP
    calls := calls + 1;
    BEGIN
      -- As the baseline times it (sql/watch/01_baseline.sql): the organization served from pools that cover the call,
      -- so both time the same work; set untimed, inside the subtransaction that is rolled back.
      UPDATE public.organization_credits
         SET credit_model = 'multi', ai_credits_available = greatest(ai_credits_available, 1000000),
             whatsapp_credits_available = greatest(whatsapp_credits_available, 1000000),
             email_credits_available = greatest(email_credits_available, 1000000),
             sms_credits_available = greatest(sms_credits_available, 1000000),
             ai_credits_total = greatest(ai_credits_total, 1000000), whatsapp_credits_total = greatest(whatsapp_credits_total, 1000000),
             email_credits_total = greatest(email_credits_total, 1000000), sms_credits_total = greatest(sms_credits_total, 1000000)
       WHERE organization_id = p_orgs[i];
      PERFORM set_config('request.jwt.claims', '{"role": "service_role"}', true);
      PERFORM set_config('role', 'service_role', true);
      v_t0 := clock_timestamp();
      PERFORM public.consume_credits_rpc(p_orgs[i], p_actions[i]);
      IF i > p_untimed THEN
        ms := ms || (extract(epoch FROM clock_timestamp() - v_t0) * 1000)::double precision;
      END IF;
      RAISE EXCEPTION USING ERRCODE = 'GW001'; -- undo the call
    EXCEPTION
      WHEN SQLSTATE 'GW001' THEN NULL;
      WHEN OTHERS THEN
        errors := errors + 1;
        first_error := coalesce(first_error, format('%s (%s)', SQLERRM, SQLSTATE));
    END;
  END LOOP;
  RETURN NEXT;
END
$fn$;
