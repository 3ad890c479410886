-- One backfill batch: flips up to $2 organizations after cursor $1 (in organization_id order) from the unified to
-- the multi model, atomically per row with their pool values. Rows are locked first (FOR UPDATE), so a concurrent
-- consume_credits_rpc either finished before (and the flip reads its debit) or waits for the flip and is then served
-- by the multi model. Runs in its own short transaction; returns the new cursor and what was flipped.
WITH batch AS (
  SELECT organization_id
    FROM public.organization_credits
   WHERE organization_id > $1::uuid AND credit_model = 'unified'
   ORDER BY organization_id
   LIMIT $2
   FOR UPDATE
), flipped AS (
  UPDATE public.organization_credits oc
     SET (ai_credits_total, ai_credits_available, whatsapp_credits_total, whatsapp_credits_available,
          email_credits_total, email_credits_available, sms_credits_total, sms_credits_available) =
         (SELECT a.ai_total, a.ai_available, a.whatsapp_total, a.whatsapp_available,
                 a.email_total, a.email_available, a.sms_total, a.sms_available
            FROM guardian.allocate_pools(oc.plan_name, oc.total_credits, oc.credits_remaining) a),
         credit_model = 'multi',
         allocation_epoch = oc.allocation_epoch + 1,
         updated_at = now()
    FROM batch b
   WHERE oc.organization_id = b.organization_id
  RETURNING oc.organization_id, oc.plan_name, oc.total_credits, oc.credits_remaining, oc.allocation_epoch
), ruled AS (
  SELECT f.*, coalesce(pc.plan_name, 'split') AS rule,
         pc.plan_name IS NULL AND (f.credits_remaining < 0 OR f.total_credits < 0) AS clamped
    FROM flipped f
    LEFT JOIN guardian.plan_catalogue pc ON pc.plan_name = lower(btrim(f.plan_name, E' \t\r\n'))
), anomalies AS (
  INSERT INTO guardian.backfill_anomalies (organization_id, kind, value, epoch)
  SELECT organization_id, 'negative_balance', least(credits_remaining, total_credits), allocation_epoch
    FROM ruled WHERE clamped
  RETURNING organization_id
)
SELECT (SELECT organization_id::text FROM batch ORDER BY organization_id DESC LIMIT 1) AS cursor,
       (SELECT count(*)::int FROM ruled) AS flipped,
       (SELECT coalesce(jsonb_object_agg(rule, n), '{}'::jsonb) FROM (SELECT rule, count(*)::int n FROM ruled GROUP BY rule) x) AS per_rule,
       (SELECT coalesce(jsonb_agg(organization_id), '[]'::jsonb) FROM anomalies) AS clamped_orgs;
