-- What verification and rollback sum: a multi org's successful consumption in its current allocation epoch.
-- Built CONCURRENTLY (applied outside a transaction, one statement): inserts into the log never wait for it.
-- If a build is interrupted, Postgres leaves an INVALID index of this name; the probe does not accept it, and the
-- update stops with the repair: DROP INDEX CONCURRENTLY public.credit_consumption_logs_org_epoch_success_idx.
CREATE INDEX CONCURRENTLY IF NOT EXISTS credit_consumption_logs_org_epoch_success_idx
  ON public.credit_consumption_logs (organization_id, allocation_epoch)
  WHERE success
