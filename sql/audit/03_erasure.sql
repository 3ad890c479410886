-- Audit, part 3: GDPR erasure, the other way data leaves the audit (the first is 02_retention_purge.sql).
--
-- guardian.erase_user(p_user_id uuid) RETURNS json
--   Replaces a user id by its pseudonym everywhere the audit and its copies keep it, in one transaction:
--     * public.credit_consumption_logs, every table of schema guardian (migration_journal, idempotency_keys, ...)
--       and every table of the backup schemas guardian_backup_* (their copies of the logs);
--     * in those tables, every uuid column equal to the id, and every text, varchar, json and jsonb column containing
--       it (any case), e.g. an idempotency key a caller built from a user id, or a journal entry's details.
--   Returns {"pseudonym": "<uuid>", "rows": {"<schema>.<table>": rows changed, ...}, "total": n} and journals an
--   'erasure' step with the same facts: the original id is written nowhere (the actor of that step is the caller's
--   jwt "sub", itself pseudonymised when a user erases themselves).
--
-- The pseudonym is deterministic, so erasing twice (or rows of one person in several tables) gives one pseudonym and
-- the audit still shows that the same person acted; it is keyed, md5(<per-database secret> || ':' || id), so it
-- cannot be recomputed from a known id by anyone who cannot read guardian.erasure_key (only the owner can).
-- A bare md5('erased:' || id) could: whoever holds a list of former user ids could re-identify every row.
--
-- Not reached from SQL: the on-disk backup exports (.guardian/backups); see docs/architecture.md "Audit".
-- SECURITY DEFINER with a pinned search_path; EXECUTE for service_role only (and the owner).

CREATE TABLE IF NOT EXISTS guardian.erasure_key (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  key text NOT NULL CHECK (length(key) >= 32),
  created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO guardian.erasure_key (key)
SELECT md5(gen_random_uuid()::text || clock_timestamp()::text) || md5(gen_random_uuid()::text)
ON CONFLICT (singleton) DO NOTHING;
REVOKE ALL ON guardian.erasure_key FROM PUBLIC, anon, authenticated, service_role;

CREATE OR REPLACE FUNCTION guardian.erase_user(p_user_id uuid)
RETURNS json
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  v_old text := lower(p_user_id::text);
  v_new uuid;
  v_actor uuid;
  v_prev text := current_setting('guardian.audit_maintenance', true);
  v_rows jsonb := '{}'::jsonb;
  v_total bigint := 0;
  v_count bigint;
  t record;
  v_set text;
  v_where text;
  v_result jsonb;
BEGIN
  IF p_user_id IS NULL THEN
    RAISE EXCEPTION 'guardian.erase_user: p_user_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
  END IF;
  SELECT md5(k.key || ':' || v_old)::uuid INTO v_new FROM guardian.erasure_key k;
  IF v_new IS NULL THEN
    RAISE EXCEPTION 'guardian.erase_user: guardian.erasure_key has no key'
      USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'apply sql/audit/03_erasure.sql again';
  END IF;

  BEGIN
    v_actor := (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')::uuid;
  EXCEPTION WHEN others THEN
    v_actor := NULL; -- claims absent or not a uuid: an operator session
  END;
  IF v_actor = p_user_id THEN
    v_actor := v_new;
  END IF;

  PERFORM set_config('guardian.audit_maintenance', 'on', true);

  -- One UPDATE per table, touching only the rows that hold the id, with one scan.
  FOR t IN
    SELECT c.oid::regclass AS rel, ns.nspname || '.' || c.relname AS label,
           array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.atttypid = 'uuid'::regtype) AS uuid_cols,
           array_agg(a.attname::text ORDER BY a.attnum)
             FILTER (WHERE a.atttypid IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype)) AS text_cols,
           array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.atttypid = 'json'::regtype) AS json_cols,
           array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.atttypid = 'jsonb'::regtype) AS jsonb_cols
      FROM pg_class c
      JOIN pg_namespace ns ON ns.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
     WHERE c.relkind = 'r'
       AND (c.oid = 'public.credit_consumption_logs'::regclass
            OR ns.nspname = 'guardian'
            OR ns.nspname LIKE 'guardian\_backup%')
       AND c.oid <> 'guardian.erasure_key'::regclass
       AND a.atttypid IN ('uuid'::regtype, 'text'::regtype, 'varchar'::regtype, 'bpchar'::regtype,
                          'json'::regtype, 'jsonb'::regtype)
     GROUP BY c.oid, ns.nspname, c.relname
     ORDER BY ns.nspname, c.relname
  LOOP
    SELECT string_agg(s, ', '), string_agg(w, ' OR ') INTO v_set, v_where FROM (
      SELECT format('%1$I = CASE WHEN %1$I = $1 THEN $2 ELSE %1$I END', col) AS s, format('%I = $1', col) AS w
        FROM unnest(t.uuid_cols) col
      UNION ALL
      SELECT format('%1$I = regexp_replace(%1$I, $3, $4, ''gi'')', col), format('%I ~* $3', col)
        FROM unnest(t.text_cols) col
      UNION ALL
      SELECT format('%1$I = regexp_replace(%1$I::text, $3, $4, ''gi'')::json', col), format('%I::text ~* $3', col)
        FROM unnest(t.json_cols) col
      UNION ALL
      SELECT format('%1$I = regexp_replace(%1$I::text, $3, $4, ''gi'')::jsonb', col), format('%I::text ~* $3', col)
        FROM unnest(t.jsonb_cols) col
    ) parts;
    EXECUTE format('UPDATE %s SET %s WHERE %s', t.rel, v_set, v_where)
      USING p_user_id, v_new, v_old, v_new::text;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count > 0 THEN
      v_rows := v_rows || jsonb_build_object(t.label, v_count);
      v_total := v_total + v_count;
    END IF;
  END LOOP;

  PERFORM set_config('guardian.audit_maintenance', coalesce(v_prev, ''), true);

  v_result := jsonb_build_object('pseudonym', v_new, 'rows', v_rows, 'total', v_total);
  INSERT INTO guardian.migration_journal (step, object_name, actor_id, details)
  VALUES ('erasure', 'guardian.erase_user', v_actor, v_result);

  RETURN v_result::json;
END
$fn$;

COMMENT ON FUNCTION guardian.erase_user(uuid) IS
  'GDPR erasure: replaces a user id by a keyed deterministic pseudonym in the audit and its backup copies; journals an erasure step without the original id; returns counts per table.';

REVOKE ALL ON FUNCTION guardian.erase_user(uuid) FROM PUBLIC, anon, authenticated;
GRANT USAGE ON SCHEMA guardian TO service_role;
GRANT EXECUTE ON FUNCTION guardian.erase_user(uuid) TO service_role;
