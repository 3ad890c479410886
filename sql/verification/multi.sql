-- Verification of the multi model, computed from the database itself. Defines a session-local function (pg_temp):
-- nothing persists. Returns {"facts": {...}, "violations": ["<check>: <n> orgs, e.g. <ids>", ...]}.
CREATE OR REPLACE FUNCTION pg_temp.guardian_verify() RETURNS jsonb
LANGUAGE plpgsql AS $fn$
DECLARE
  facts jsonb := '{}'::jsonb;
  violations text[] := '{}';
  n bigint;
  ids text;
  v record;
BEGIN
  CREATE TEMP TABLE IF NOT EXISTS guardian_verify_orgs ON COMMIT DROP AS
  WITH cons AS (
    SELECT l.organization_id, l.allocation_epoch,
           sum(l.ai_consumed) AS ai, sum(l.whatsapp_consumed) AS whatsapp,
           sum(l.email_consumed) AS email, sum(l.sms_consumed) AS sms
      FROM public.credit_consumption_logs l
     WHERE l.success AND l.credit_model = 'multi'
     GROUP BY 1, 2
  )
  SELECT oc.organization_id, oc.credit_model, oc.plan_name, oc.total_credits, oc.credits_remaining,
         oc.ai_credits_total, oc.ai_credits_available, oc.whatsapp_credits_total, oc.whatsapp_credits_available,
         oc.email_credits_total, oc.email_credits_available, oc.sms_credits_total, oc.sms_credits_available,
         a.rule, a.ai_total, a.ai_available, a.whatsapp_total, a.whatsapp_available,
         a.email_total, a.email_available, a.sms_total, a.sms_available,
         coalesce(c.ai, 0) AS c_ai, coalesce(c.whatsapp, 0) AS c_whatsapp,
         coalesce(c.email, 0) AS c_email, coalesce(c.sms, 0) AS c_sms,
         -- The pools this epoch started with (guardian.allocations): credits_remaining has moved since (v2's unified
         -- debit, the application's refunds and grants), so the allocation is read, not recomputed. Where no row was
         -- recorded (an allocation by an earlier version), the rule on today's balance, as before.
         al.rule AS allocated_rule,
         coalesce(al.ai, a.ai_available) AS al_ai, coalesce(al.whatsapp, a.whatsapp_available) AS al_whatsapp,
         coalesce(al.email, a.email_available) AS al_email, coalesce(al.sms, a.sms_available) AS al_sms,
         CASE WHEN al.organization_id IS NULL THEN oc.credits_remaining ELSE al.basis END AS al_basis
    FROM public.organization_credits oc
   CROSS JOIN LATERAL guardian.allocate_pools(oc.plan_name, oc.total_credits, oc.credits_remaining) a
    LEFT JOIN cons c ON c.organization_id = oc.organization_id AND c.allocation_epoch = oc.allocation_epoch
    LEFT JOIN guardian.allocations al ON al.organization_id = oc.organization_id AND al.epoch = oc.allocation_epoch;

  -- Facts.
  SELECT jsonb_build_object(
           'orgsTotal', count(*),
           'orgsMigrated', count(*) FILTER (WHERE credit_model = 'multi'),
           'orgsPerPlan', coalesce((SELECT jsonb_object_agg(rule, k) FROM (SELECT rule, count(*) k FROM guardian_verify_orgs GROUP BY rule) x), '{}'::jsonb),
           'splitOrgsConserved', count(*) FILTER (WHERE rule = 'split'
               AND ai_credits_total + whatsapp_credits_total + email_credits_total + sms_credits_total = greatest(total_credits, 0)
               AND (allocated_rule = 'kept'
                    OR al_ai + al_whatsapp + al_email + al_sms = greatest(al_basis, 0))),
           'splitOrgs', count(*) FILTER (WHERE rule = 'split'),
           'creditsAvailable', jsonb_build_object(
               'ai', coalesce(sum(ai_credits_available), 0), 'whatsapp', coalesce(sum(whatsapp_credits_available), 0),
               'email', coalesce(sum(email_credits_available), 0), 'sms', coalesce(sum(sms_credits_available), 0)),
           'creditsTotal', jsonb_build_object(
               'ai', coalesce(sum(ai_credits_total), 0), 'whatsapp', coalesce(sum(whatsapp_credits_total), 0),
               'email', coalesce(sum(email_credits_total), 0), 'sms', coalesce(sum(sms_credits_total), 0)))
    INTO facts FROM guardian_verify_orgs;

  -- Invariants, each naming up to 10 organizations.
  FOR v IN
    WITH bad AS (
      SELECT 'not migrated (still unified)' AS check_name, organization_id FROM guardian_verify_orgs WHERE credit_model <> 'multi'
      UNION ALL
      SELECT 'pool totals differ from the allocation rule', organization_id FROM guardian_verify_orgs
       WHERE credit_model = 'multi' AND (ai_credits_total, whatsapp_credits_total, email_credits_total, sms_credits_total)
             IS DISTINCT FROM (ai_total, whatsapp_total, email_total, sms_total)
      UNION ALL
      SELECT 'available + consumed since allocation differs from the allocation', organization_id FROM guardian_verify_orgs
       WHERE credit_model = 'multi'
         AND (ai_credits_available + c_ai, whatsapp_credits_available + c_whatsapp, email_credits_available + c_email, sms_credits_available + c_sms)
             IS DISTINCT FROM (al_ai::bigint, al_whatsapp::bigint, al_email::bigint, al_sms::bigint)
      UNION ALL
      SELECT 'split pools do not add up to total_credits', organization_id FROM guardian_verify_orgs
       WHERE credit_model = 'multi' AND rule = 'split'
         AND ai_credits_total + whatsapp_credits_total + email_credits_total + sms_credits_total <> greatest(total_credits, 0)
    )
    SELECT check_name, count(*) AS k, (array_agg(organization_id::text ORDER BY organization_id))[1:10] AS some_ids
      FROM bad GROUP BY check_name
  LOOP
    violations := violations || format('%s: %s org(s): %s%s', v.check_name, v.k,
      array_to_string(v.some_ids, ', '), CASE WHEN v.k > 10 THEN ', ...' ELSE '' END);
  END LOOP;

  -- Functions: exactly one consume_credits_rpc (the v2 signature) and the batch function.
  SELECT count(*) INTO n FROM pg_proc WHERE proname = 'consume_credits_rpc' AND pronamespace = 'public'::regnamespace;
  facts := facts || jsonb_build_object('functions',
    (SELECT coalesce(jsonb_agg(p.oid::regprocedure::text ORDER BY 1), '[]'::jsonb) FROM pg_proc p
      WHERE p.pronamespace = 'public'::regnamespace AND p.proname IN ('consume_credits_rpc', 'consume_credits_batch')));
  IF n <> 1 OR to_regprocedure('public.consume_credits_rpc(uuid,text,integer,text)') IS NULL THEN
    violations := violations || format('functions: expected exactly consume_credits_rpc(uuid,text,integer,text), found %s overload(s)', n);
  END IF;
  IF to_regprocedure('public.consume_credits_batch(uuid,jsonb)') IS NULL THEN
    violations := violations || 'functions: consume_credits_batch(uuid,jsonb) is missing'::text;
  END IF;

  -- Tenant isolation present: RLS on and at least one policy per credit table.
  SELECT string_agg(t, ', ') INTO ids FROM unnest(ARRAY['organizations', 'organization_credits', 'credit_consumption_logs', 'credit_actions']) t
   WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = to_regclass('public.' || t) AND c.relrowsecurity)
      OR NOT EXISTS (SELECT 1 FROM pg_policies p WHERE p.schemaname = 'public' AND p.tablename = t);
  IF ids IS NOT NULL THEN
    violations := violations || ('tenant isolation: RLS off or no policy on ' || ids);
  END IF;
  facts := facts || jsonb_build_object('policies',
    (SELECT count(*) FROM pg_policies WHERE schemaname = 'public'
        AND tablename IN ('organizations', 'organization_credits', 'credit_consumption_logs', 'credit_actions')));

  facts := facts || jsonb_build_object('negativeBalancesReported',
    (SELECT count(DISTINCT organization_id) FROM guardian.backfill_anomalies WHERE kind = 'negative_balance'));
  DROP TABLE IF EXISTS guardian_verify_orgs;
  RETURN jsonb_build_object('facts', facts, 'violations', to_jsonb(violations));
END
$fn$;
