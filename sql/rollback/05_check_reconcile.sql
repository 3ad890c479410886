-- Rollback: the reconcile, verified exactly, in the transaction that restores v1 and before v1 takes over. Until
-- then v2 serves every organization under a row lock, debiting and logging in one transaction, so any snapshot
-- sees each consumption in both the balance and the log, or in neither: the check is exact under live load. (Once
-- v1 serves, its unlocked read-then-write loses updates, and the application may reset balances: a later check
-- could only report differences, which the unified verification does, as a fact.)
-- One row: organizations in the backup whose balance is not backup - unified cost of every success since (floored
-- at 0), up to 10 of their ids, and how many organizations are still multi. __BACKUP_SCHEMA__ is the backup's name.
WITH since AS (
  SELECT l.organization_id, sum(l.credits_consumed) AS consumed
    FROM public.credit_consumption_logs l
   WHERE l.success AND NOT EXISTS (SELECT 1 FROM __BACKUP_SCHEMA__.credit_consumption_logs x WHERE x.id = l.id)
   GROUP BY 1),
bad AS (
  SELECT oc.organization_id
    FROM public.organization_credits oc
    JOIN __BACKUP_SCHEMA__.organization_credits b USING (organization_id)
    LEFT JOIN since s USING (organization_id)
   WHERE oc.credits_remaining <> greatest(0, b.credits_remaining - coalesce(s.consumed, 0)))
SELECT (SELECT count(*) FROM bad)::bigint AS mismatched,
       (SELECT array_agg(organization_id::text ORDER BY organization_id) FROM (SELECT organization_id FROM bad ORDER BY 1 LIMIT 10) x) AS some_ids,
       (SELECT count(*) FROM public.organization_credits WHERE credit_model <> 'unified')::bigint AS still_multi,
       (SELECT count(*) FROM __BACKUP_SCHEMA__.organization_credits)::bigint AS checked;
