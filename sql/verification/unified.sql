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
  pinned boolean;
  rb jsonb;
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

  -- v1's search_path: a SECURITY DEFINER v1 without a pinned one that ends with pg_temp runs a caller's temporary
  -- objects as its owner. Restored by the rollback, it is pinned (sql/rollback/06_pin_v1.sql) unless
  -- guardian:rollback.function = verbatim asked for it as backed up: then a fact and a flag, not a violation.
  SELECT p.prosecdef, EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%' AND c ~ '(^|[=,] ?)"?pg_temp"?$')
    INTO rolled_back, pinned
    FROM pg_proc p WHERE p.oid = to_regprocedure('public.consume_credits_rpc(uuid,text)');
  facts := facts || jsonb_build_object('v1SecurityDefiner', coalesce(rolled_back, false), 'v1SearchPathPinned', coalesce(pinned, false));
  rolled_back := false;

  -- After a rollback: the switch changed no unified value (checked in each batch's transaction, and recorded).
  -- Since then, v1 serves: its unlocked read-then-write loses updates under concurrency, and the application writes
  -- balances as it always did; nothing here recomputes them.
  IF to_regclass('guardian.backups') IS NOT NULL AND to_regclass('guardian.migration_journal') IS NOT NULL THEN
    SELECT b.schema_name INTO bk FROM guardian.backups b
     WHERE b.restore_verified AND to_regnamespace(b.schema_name) IS NOT NULL
     ORDER BY b.created_at DESC LIMIT 1;
    IF bk IS NOT NULL THEN
      SELECT j.details INTO rb FROM guardian.migration_journal j
       WHERE j.step = 'rollback' AND j.object_name = bk ORDER BY j.id DESC LIMIT 1;
      rolled_back := rb IS NOT NULL;
    END IF;
    facts := facts || jsonb_build_object('latestBackup', bk, 'rolledBackFromBackup', rolled_back);
    IF rolled_back THEN
      facts := facts || jsonb_build_object('rollback', jsonb_build_object(
        'orgsSwitched', rb -> 'orgsSwitched', 'unifiedValuesChanged', rb -> 'unifiedValuesChanged',
        'function', rb ->> 'function'));
      IF rb -> 'unifiedValuesChanged' IS NULL THEN
        violations := violations || format('rollback from %s has no record that the switch kept every unified value (journal step rollback, unifiedValuesChanged)', bk);
      ELSIF (rb ->> 'unifiedValuesChanged')::bigint <> 0 THEN
        violations := violations || format('rollback from %s changed %s unified value(s)', bk, rb ->> 'unifiedValuesChanged');
      END IF;
      IF coalesce(rb ->> 'function', 'v1') = 'v1' AND (facts ->> 'v1SecurityDefiner')::boolean
         AND NOT (facts ->> 'v1SearchPathPinned')::boolean THEN
        violations := violations || 'v1 is SECURITY DEFINER without a search_path that ends with pg_temp: a caller''s temporary objects would run as its owner'::text;
      END IF;
      IF rb ->> 'function' = 'verbatim' THEN
        facts := facts || jsonb_build_object('v1Verbatim', true);
      END IF;
    END IF;
  END IF;

  RETURN jsonb_build_object('facts', facts, 'violations', to_jsonb(violations));
END
$fn$;
