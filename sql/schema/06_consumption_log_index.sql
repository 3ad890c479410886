-- What verification and rollback sum: a multi org's successful consumption in its current allocation epoch.
-- Built CONCURRENTLY (applied outside a transaction, one statement): inserts into the log never wait for it.
-- If a build is interrupted, Postgres leaves an INVALID index of this name, which IF NOT EXISTS would skip: the
-- provider (providers/sqlObject.ts, kind "index") drops an INVALID index of this name concurrently before each build.
CREATE INDEX CONCURRENTLY IF NOT EXISTS credit_consumption_logs_org_epoch_success_idx
  ON public.credit_consumption_logs (organization_id, allocation_epoch)
  WHERE success
