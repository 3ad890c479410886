-- Verification of the unified model (Phase 3.5 not applied, or rolled back), computed from the database itself.
-- Session-local function (pg_temp); objects Phase 3.5 may or may not have created are looked up before use.
-- Returns {"facts": {...}, "violations": [...]}.
CREATE OR REPLACE FUNCTION pg_temp.guardian_verify() RETURNS jsonb
LANGUAGE plpgsql AS $fn$
DECLARE
  facts jsonb;
  violations text[] := '{}';
  n bigint;
  k bigint;
  some_ids text;
  bk text;
  rolled_back boolean := false;
BEGIN
  SELECT jsonb_build_object('orgsTotal', count(*)) INTO facts FROM public.organization_credits;

  -- Exactly one consume_credits_rpc, the v1 two-argument one.
  SELECT count(*) INTO n FROM pg_proc WHERE proname = 'consume_credits_rpc' AND pronamespace = 'public'::regnamespace;
  facts := facts || jsonb_build_object('functions',
    (SELECT coalesce(jsonb_agg(p.oid::regprocedure::text ORDER BY 1), '[]'::jsonb) FROM pg_proc p
      WHERE p.pronamespace = 'public'::regnamespace AND p.proname IN ('consume_credits_rpc', 'consume_credits_batch')));
  IF n <> 1 OR to_regprocedure('public.consume_credits_rpc(uuid,text)') IS NULL THEN
    violations := violations || format('functions: expected exactly the v1 consume_credits_rpc(uuid,text), found %s overload(s)', n);
  END IF;

  IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'public.organization_credits'::regclass AND attname = 'credit_model' AND NOT attisdropped) THEN
    EXECUTE $q$SELECT count(*), (array_agg(organization_id::text ORDER BY organization_id))[1:10]::text
                 FROM public.organization_credits WHERE credit_model <> 'unified'$q$ INTO k, some_ids;
    facts := facts || jsonb_build_object('orgsMulti', k);
    IF k > 0 THEN
      violations := violations || format('still in the multi model: %s org(s): %s', k, some_ids);
    END IF;
  ELSE
    facts := facts || jsonb_build_object('orgsMulti', 0);
  END IF;

  -- After a rollback. The reconcile itself was verified exactly by the rollback, in the transaction that switched
  -- to v1 and before v1 served a call (sql/rollback/05_check_reconcile.sql; journal 'rollback', reconcileVerified):
  -- a rollback without that record is a violation. Since then, v1 serves: its unlocked read-then-write loses updates
  -- under concurrency, and the application may reset balances. So the difference between each balance and "backup -
  -- consumption since" is reported here as a fact with figures (orgs, credits), not as a failed rollback.
  IF to_regclass('guardian.backups') IS NOT NULL AND to_regclass('guardian.migration_journal') IS NOT NULL THEN
    SELECT b.schema_name INTO bk FROM guardian.backups b
     WHERE b.restore_verified AND to_regnamespace(b.schema_name) IS NOT NULL
     ORDER BY b.created_at DESC LIMIT 1;
    IF bk IS NOT NULL THEN
      SELECT EXISTS (SELECT 1 FROM guardian.migration_journal j WHERE j.step = 'rollback' AND j.object_name = bk) INTO rolled_back;
    END IF;
    facts := facts || jsonb_build_object('latestBackup', bk, 'rolledBackFromBackup', rolled_back);
    IF rolled_back THEN
      IF NOT EXISTS (SELECT 1 FROM guardian.migration_journal j WHERE j.step = 'rollback' AND j.object_name = bk
                        AND (j.details ->> 'reconcileVerified')::boolean) THEN
        violations := violations || format('rollback from %s has no exact reconcile check on record (journal step rollback, reconcileVerified)', bk);
      END IF;
      EXECUTE format($q$
        WITH since AS (
          SELECT l.organization_id, sum(l.credits_consumed) AS consumed
            FROM public.credit_consumption_logs l
           WHERE l.success AND NOT EXISTS (SELECT 1 FROM %1$I.credit_consumption_logs x WHERE x.id = l.id)
           GROUP BY 1)
        SELECT count(*), coalesce(sum(oc.credits_remaining - greatest(0, b.credits_remaining - coalesce(s.consumed, 0))), 0)
          FROM public.organization_credits oc
          JOIN %1$I.organization_credits b USING (organization_id)
          LEFT JOIN since s USING (organization_id)
         WHERE oc.credits_remaining <> greatest(0, b.credits_remaining - coalesce(s.consumed, 0))$q$, bk)
        INTO k, n;
      facts := facts || jsonb_build_object('balancesChangedSinceRollback', jsonb_build_object(
        'orgs', k, 'creditsMoreThanLogged', n,
        'meaning', 'balances that are not backup minus logged consumption since: updates v1 lost under concurrency (positive credits), or balances the application set'));
    END IF;
  END IF;

  RETURN jsonb_build_object('facts', facts, 'violations', to_jsonb(violations));
END
$fn$;
