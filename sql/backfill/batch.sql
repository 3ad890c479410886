-- One backfill batch: flips at most $3 of the unified organizations stored in heap pages [$1, $2) of
-- public.organization_credits to the multi model, atomically per row with their pool values (the caller runs the
-- same range again while a batch comes back full: flipped rows are multi, so each run takes the next ones). Rows are
-- locked first (FOR UPDATE), so a concurrent consume_credits_rpc either finished before (and the flip reads its
-- debit) or waits for the flip and is then served by the multi model. Runs in its own short transaction; returns
-- what was locked and flipped. The flip finds each row by organization_id, not by the ctid its lock returned: when
-- the lock waited for a call, that ctid is of the call's row version, which the statement's snapshot (taken before
-- the wait) cannot see, so a TID scan would find nothing (test/zero-downtime.test.ts, "a call that commits while a
-- batch waits"); the primary key finds the version the snapshot sees, and the UPDATE follows it to the newest.
-- Batches walk the table in its physical order (a TID range scan): each heap page is read, dirtied and written once,
-- where a walk in organization_id order (random uuids) touches every page once per row it holds, and on a table
-- larger than shared_buffers makes the server write each page tens of times (measured at 1M orgs: 737,313 buffers
-- written by backends during the backfill). A row a concurrent call moved behind the walk is found by the next pass.
-- The pools are computed from the columns the FOR UPDATE step returns, which are those of the row version it locked
-- (after waiting for a concurrent call, its debit included), never from another scan of the table: that would read
-- the statement's snapshot, taken before the wait, and allocate a split org from its balance before that debit.
-- A catalogue plan's pools are its catalogue row (the first branch of guardian.allocate_pools); only the other orgs
-- call guardian.allocate_pools, the one place of the split rule and its rounding (OFFSET 0 keeps the lateral
-- subquery apart, so its WHERE is a one-time filter: no call for a catalogue org).
-- Forward again after a rollback gives no one free credits (contract): an organization guardian.rolled_back_pools
-- holds, whose plan_name, total_credits and cycle_end_date are still what the rollback found, keeps its pool totals
-- and gets back the pools it had then, minus what v1 (or v2's unified path) served after the rollback's log mark,
-- mapped to pools by the catalogue (floored at 0): rule 'kept'. Any other is allocated by the rule above. Its record
-- is then removed, so only the rollback that wrote it is ever read.
WITH batch AS (
  SELECT organization_id, plan_name, total_credits, credits_remaining, cycle_end_date,
         ai_credits_total, ai_credits_available, whatsapp_credits_total, whatsapp_credits_available,
         email_credits_total, email_credits_available, sms_credits_total, sms_credits_available
    FROM public.organization_credits
   WHERE ctid >= format('(%s,0)', $1::bigint)::tid AND ctid < format('(%s,0)', $2::bigint)::tid
     AND credit_model = 'unified'
   LIMIT $3
   FOR UPDATE
), kept AS (
  SELECT b.organization_id,
         greatest(0, b.ai_credits_available - coalesce(u.ai, 0)) AS ai_available,
         greatest(0, b.whatsapp_credits_available - coalesce(u.whatsapp, 0)) AS whatsapp_available,
         greatest(0, b.email_credits_available - coalesce(u.email, 0)) AS email_available,
         greatest(0, b.sms_credits_available - coalesce(u.sms, 0)) AS sms_available
    FROM batch b
    JOIN guardian.rolled_back_pools r
      ON r.organization_id = b.organization_id
     AND (r.plan_name, r.total_credits, r.cycle_end_date)
         IS NOT DISTINCT FROM (b.plan_name, b.total_credits, b.cycle_end_date)
    LEFT JOIN LATERAL (
      SELECT sum(x.ai_credits_required::bigint * l.quantity) AS ai,
             sum(x.whatsapp_credits_required::bigint * l.quantity) AS whatsapp,
             sum(x.email_credits_required::bigint * l.quantity) AS email,
             sum(x.sms_credits_required::bigint * l.quantity) AS sms
        FROM public.credit_consumption_logs l
        JOIN public.credit_actions x ON x.action_type = l.action_type
       WHERE l.organization_id = b.organization_id AND l.id > r.log_mark AND l.success
         AND l.credit_model IS DISTINCT FROM 'multi'
      OFFSET 0
    ) u ON true
), alloc AS (
  SELECT b.organization_id, CASE WHEN k.organization_id IS NOT NULL THEN 'kept' ELSE pc.plan_name END AS catalogue_plan,
         CASE WHEN k.organization_id IS NOT NULL THEN b.ai_credits_total ELSE coalesce(pc.ai, a.ai_total) END AS ai_total,
         coalesce(k.ai_available, pc.ai, a.ai_available) AS ai_available,
         CASE WHEN k.organization_id IS NOT NULL THEN b.whatsapp_credits_total ELSE coalesce(pc.whatsapp, a.whatsapp_total) END AS whatsapp_total,
         coalesce(k.whatsapp_available, pc.whatsapp, a.whatsapp_available) AS whatsapp_available,
         CASE WHEN k.organization_id IS NOT NULL THEN b.email_credits_total ELSE coalesce(pc.email, a.email_total) END AS email_total,
         coalesce(k.email_available, pc.email, a.email_available) AS email_available,
         CASE WHEN k.organization_id IS NOT NULL THEN b.sms_credits_total ELSE coalesce(pc.sms, a.sms_total) END AS sms_total,
         coalesce(k.sms_available, pc.sms, a.sms_available) AS sms_available
    FROM batch b
    LEFT JOIN kept k ON k.organization_id = b.organization_id
    LEFT JOIN guardian.plan_catalogue pc ON pc.plan_name = lower(btrim(b.plan_name, E' \t\r\n'))
    LEFT JOIN LATERAL (
      SELECT * FROM guardian.allocate_pools(b.plan_name, b.total_credits, b.credits_remaining)
       WHERE pc.plan_name IS NULL AND k.organization_id IS NULL OFFSET 0
    ) a ON true
), forgotten AS (
  DELETE FROM guardian.rolled_back_pools r USING batch b WHERE r.organization_id = b.organization_id
  RETURNING r.organization_id
), flipped AS (
  UPDATE public.organization_credits oc
     SET (ai_credits_total, ai_credits_available, whatsapp_credits_total, whatsapp_credits_available,
          email_credits_total, email_credits_available, sms_credits_total, sms_credits_available) =
         (a.ai_total, a.ai_available, a.whatsapp_total, a.whatsapp_available,
          a.email_total, a.email_available, a.sms_total, a.sms_available),
         credit_model = 'multi',
         allocation_epoch = oc.allocation_epoch + 1,
         updated_at = now()
    FROM alloc a
   WHERE oc.organization_id = a.organization_id
  RETURNING oc.organization_id, oc.plan_name, oc.total_credits, oc.credits_remaining, oc.allocation_epoch, a.catalogue_plan
), recorded AS (
  INSERT INTO guardian.allocations (organization_id, epoch, rule, basis, ai, whatsapp, email, sms)
  SELECT f.organization_id, f.allocation_epoch, coalesce(f.catalogue_plan, 'split'), f.credits_remaining,
         a.ai_available, a.whatsapp_available, a.email_available, a.sms_available
    FROM flipped f JOIN alloc a ON a.organization_id = f.organization_id
  ON CONFLICT (organization_id, epoch) DO UPDATE
    SET rule = EXCLUDED.rule, basis = EXCLUDED.basis, ai = EXCLUDED.ai, whatsapp = EXCLUDED.whatsapp,
        email = EXCLUDED.email, sms = EXCLUDED.sms, at = now()
  RETURNING organization_id
), ruled AS (
  SELECT f.*, coalesce(f.catalogue_plan, 'split') AS rule,
         f.catalogue_plan IS NULL AND (f.credits_remaining < 0 OR f.total_credits < 0) AS clamped
    FROM flipped f
), anomalies AS (
  INSERT INTO guardian.backfill_anomalies (organization_id, kind, value, epoch)
  SELECT organization_id, 'negative_balance', least(credits_remaining, total_credits), allocation_epoch
    FROM ruled WHERE clamped
  RETURNING organization_id
)
SELECT (SELECT count(*)::int FROM batch) AS locked,
       (SELECT count(*)::int FROM forgotten) AS records_used,
       (SELECT count(*)::int FROM recorded) AS allocations_recorded,
       (SELECT count(*)::int FROM ruled) AS flipped,
       (SELECT coalesce(jsonb_object_agg(rule, n), '{}'::jsonb) FROM (SELECT rule, count(*)::int n FROM ruled GROUP BY rule) x) AS per_rule,
       (SELECT coalesce(jsonb_agg(organization_id), '[]'::jsonb) FROM anomalies) AS clamped_orgs;
