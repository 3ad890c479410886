-- Audit, part 2: the retention purge, one of the two ways records leave the audit (the other is 03_erasure.sql).
--
-- guardian.purge_audit(p_older_than interval DEFAULT <the retention>) RETURNS json
--   Deletes audit records older than p_older_than from public.credit_consumption_logs and guardian.migration_journal,
--   and the consume_credits_rpc idempotency keys as old (guardian.idempotency_keys: a replay of a key older than the
--   retention counts as a new call), journals a 'purge' step with the counts, and returns
--     {"older_than": "<interval>", "cutoff": "<timestamptz>",
--      "deleted": {"credit_consumption_logs": n, "migration_journal": m, "idempotency_keys": i}, "retained_live_epoch": k}
--   * It never shortens the retention: p_older_than below the configured retention is refused. The retention is
--     guardian:audit.retentionDays; components/audit.ts (renderPurgeSql) writes it over this file's 730 days, in the
--     parameter default and the c_retention constant, so the deployed function carries the stack's value.
--   * retained_live_epoch: successful multi-model rows of an organization's current allocation epoch are kept even
--     when old: they are what its pools' balance is checked against (total = available + consumed_in_epoch,
--     docs/architecture.md "Invariants"). They leave at the next allocation of that organization.
--   * SECURITY DEFINER with a pinned search_path; EXECUTE for service_role only (and the owner).

CREATE OR REPLACE FUNCTION guardian.purge_audit(p_older_than interval DEFAULT '730 days')
RETURNS json
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  c_retention constant interval := '730 days';
  v_cutoff timestamptz;
  v_logs bigint;
  v_journal bigint;
  v_keys bigint;
  v_kept bigint;
  v_actor uuid;
  v_prev text := current_setting('guardian.audit_maintenance', true);
  v_result jsonb;
BEGIN
  IF p_older_than IS NULL OR p_older_than < c_retention THEN
    RAISE EXCEPTION 'guardian.purge_audit: p_older_than (%) is shorter than the retention (%, guardian:audit.retentionDays)',
      coalesce(p_older_than::text, 'NULL'), c_retention
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'the purge never shortens the retention; one person''s ids are removed with guardian.erase_user()';
  END IF;
  v_cutoff := now() - p_older_than;

  BEGIN
    v_actor := (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')::uuid;
  EXCEPTION WHEN others THEN
    v_actor := NULL; -- claims absent or not a uuid: an operator session
  END;

  PERFORM set_config('guardian.audit_maintenance', 'on', true);

  WITH gone AS (
    DELETE FROM public.credit_consumption_logs l
     WHERE l.created_at < v_cutoff
       AND NOT coalesce(l.success AND l.credit_model = 'multi' AND EXISTS (
             SELECT 1 FROM public.organization_credits oc
              WHERE oc.organization_id = l.organization_id
                AND oc.credit_model = 'multi'
                AND oc.allocation_epoch = l.allocation_epoch), false)
    RETURNING 1)
  SELECT count(*) INTO v_logs FROM gone;

  SELECT count(*) INTO v_kept FROM public.credit_consumption_logs l WHERE l.created_at < v_cutoff;

  WITH gone AS (
    DELETE FROM guardian.migration_journal j WHERE j.at < v_cutoff RETURNING 1)
  SELECT count(*) INTO v_journal FROM gone;

  WITH gone AS (
    DELETE FROM guardian.idempotency_keys k WHERE k.created_at < v_cutoff RETURNING 1)
  SELECT count(*) INTO v_keys FROM gone;

  PERFORM set_config('guardian.audit_maintenance', coalesce(v_prev, ''), true);

  v_result := jsonb_build_object(
    'older_than', p_older_than::text,
    'cutoff', v_cutoff,
    'deleted', jsonb_build_object('credit_consumption_logs', v_logs, 'migration_journal', v_journal, 'idempotency_keys', v_keys),
    'retained_live_epoch', v_kept);

  INSERT INTO guardian.migration_journal (step, object_name, actor_id, details)
  VALUES ('purge', 'guardian.purge_audit', v_actor, v_result);

  RETURN v_result::json;
END
$fn$;

COMMENT ON FUNCTION guardian.purge_audit(interval) IS
  'Retention purge of the audit (credit_consumption_logs, migration_journal) and of the idempotency keys: deletes records older than the retention, journals a purge step, returns counts per table.';

REVOKE ALL ON FUNCTION guardian.purge_audit(interval) FROM PUBLIC, anon, authenticated;
GRANT USAGE ON SCHEMA guardian TO service_role;
GRANT EXECUTE ON FUNCTION guardian.purge_audit(interval) TO service_role;
