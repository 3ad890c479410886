-- One backfill batch: flips at most $3 of the unified organizations stored in heap pages [$1, $2) of
-- public.organization_credits to the multi model, atomically per row with their pool values (the caller runs the
-- same range again while a batch comes back full: flipped rows are multi, so each run takes the next ones). Rows are
-- locked first (FOR UPDATE), so a concurrent consume_credits_rpc either finished before (and the flip reads its
-- debit) or waits for the flip and is then served by the multi model. Runs in its own short transaction; returns
-- the table's size in pages now, and what was locked and flipped.
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
WITH batch AS (
  SELECT organization_id, plan_name, total_credits, credits_remaining
    FROM public.organization_credits
   WHERE ctid >= format('(%s,0)', $1::bigint)::tid AND ctid < format('(%s,0)', $2::bigint)::tid
     AND credit_model = 'unified'
   LIMIT $3
   FOR UPDATE
), alloc AS (
  SELECT b.organization_id, pc.plan_name AS catalogue_plan,
         coalesce(pc.ai, a.ai_total) AS ai_total, coalesce(pc.ai, a.ai_available) AS ai_available,
         coalesce(pc.whatsapp, a.whatsapp_total) AS whatsapp_total, coalesce(pc.whatsapp, a.whatsapp_available) AS whatsapp_available,
         coalesce(pc.email, a.email_total) AS email_total, coalesce(pc.email, a.email_available) AS email_available,
         coalesce(pc.sms, a.sms_total) AS sms_total, coalesce(pc.sms, a.sms_available) AS sms_available
    FROM batch b
    LEFT JOIN guardian.plan_catalogue pc ON pc.plan_name = lower(btrim(b.plan_name, E' \t\r\n'))
    LEFT JOIN LATERAL (
      SELECT * FROM guardian.allocate_pools(b.plan_name, b.total_credits, b.credits_remaining) WHERE pc.plan_name IS NULL OFFSET 0
    ) a ON true
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
SELECT pg_relation_size('public.organization_credits') / current_setting('block_size')::bigint AS table_pages,
       (SELECT count(*)::int FROM batch) AS locked,
       (SELECT count(*)::int FROM ruled) AS flipped,
       (SELECT coalesce(jsonb_object_agg(rule, n), '{}'::jsonb) FROM (SELECT rule, count(*)::int n FROM ruled GROUP BY rule) x) AS per_rule,
       (SELECT coalesce(jsonb_agg(organization_id), '[]'::jsonb) FROM anomalies) AS clamped_orgs;
