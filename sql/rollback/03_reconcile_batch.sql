-- Rollback step 2b: the locked organizations ($1) go back to the unified model with
--   credits_remaining = greatest(0, value at backup time - unified cost of every successful consumption since)
-- where "since" means every log row that is not in the backup's copy of credit_consumption_logs (exact even for
-- calls that were in flight when the backup's snapshot was taken). An organization created after the backup was
-- only ever served by the multi model, which does not touch credits_remaining, so its own value is the base and its
-- multi-model consumption is subtracted. __BACKUP_SCHEMA__ is replaced by the backup's schema name.
WITH ids AS (
  SELECT unnest($1::uuid[]) AS organization_id
), since AS (
  SELECT l.organization_id,
         sum(l.credits_consumed) FILTER (WHERE NOT EXISTS (
               SELECT 1 FROM __BACKUP_SCHEMA__.credit_consumption_logs x WHERE x.id = l.id)) AS since_backup,
         sum(l.credits_consumed) FILTER (WHERE l.credit_model = 'multi') AS multi_served
    FROM public.credit_consumption_logs l
    JOIN ids USING (organization_id)
   WHERE l.success
   GROUP BY l.organization_id
)
UPDATE public.organization_credits oc
   SET credit_model = 'unified',
       credits_remaining = CASE
         WHEN b.organization_id IS NOT NULL THEN greatest(0, b.credits_remaining - coalesce(s.since_backup, 0))
         ELSE greatest(0, oc.credits_remaining - coalesce(s.multi_served, 0))
       END,
       updated_at = now()
  FROM ids
  LEFT JOIN __BACKUP_SCHEMA__.organization_credits b ON b.organization_id = ids.organization_id
  LEFT JOIN since s ON s.organization_id = ids.organization_id
 WHERE oc.organization_id = ids.organization_id;
