-- Audit, part 3: GDPR erasure, the other way data leaves the audit (the first is 02_retention_purge.sql).
--
-- guardian.erase_user(p_user_id uuid) RETURNS json
--   Erases USERS only. It first refuses, changing nothing, an id that is not a user's, and says why:
--     * an organization's id (public.organizations, organization_credits, the log's or the journal's organization_id,
--       or the organizations copy of a backup): "... is an organization's id, not a user's";
--     * an id found nowhere a user is: not in auth.users, public.profiles, the log's user_id, the journal's actor_id,
--       and not erased before (an earlier 'erasure' step journaled its pseudonym): "... is not a user's id".
--   A user erased before is recognised by that journaled pseudonym, so erasing twice finds nothing and succeeds.
--   Then, in one transaction, it replaces the user id by its pseudonym in the audit:
--     * public.credit_consumption_logs and the tables of schema guardian, except guardian.backups (what rollback
--       restores from: the v1 definition, the manifest) and guardian.erasure_key;
--     * in those tables, every uuid column equal to the id (never an organization_id column: those name
--       organizations), and every text, varchar, json and jsonb column containing it (any case), e.g. an idempotency key
--       a caller built from a user id, or a journal entry's details.
--   Returns {"pseudonym": "<uuid>", "rows": {"<schema>.<table>": rows changed, ...}, "total": n,
--            "keptInBackups": {"<backup schema>.<table>": rows still holding the id, ...}} and journals an 'erasure'
--   step with the same facts: the original id is written nowhere (the actor of that step is the caller's jwt "sub",
--   itself pseudonymised when a user erases themselves).
--
-- Where personal data is, and what erasure does to it (docs/architecture.md, "Audit", says the same):
--   public.credit_consumption_logs.user_id, idempotency_key   pseudonymised (the key is a sha256 since v2; an older
--                                                             key that embeds the id is rewritten)
--   guardian.migration_journal.actor_id, details               pseudonymised
--   guardian.idempotency_keys (key hashes, stored results)     pseudonymised where the id appears
--   guardian_backup_*.* (the backups' copies of the tables)    NOT altered: kept as they were taken. Rollback reads them
--                                                             (balances at backup time, which log rows are newer),
--                                                             and their row checksums, recorded in guardian.backups and
--                                                             in the export's manifest, prove the backup intact (restore
--                                                             check, report, rehearsal). The only personal data there is
--                                                             the acting user id of each copied log row (user_id, and an
--                                                             old idempotency_key built from it); the result's
--                                                             keptInBackups names the rows, so the erasure request can
--                                                             record them. They go when the backup is deleted (by an
--                                                             operator: the program never drops a backup).
--   guardian.backups                                          NOT altered (holds no user id: counts, checksums, the
--                                                             redacted database label, function definitions)
--   the on-disk exports (.guardian/backups, 0600 files)       not reachable from SQL; same content as the backup schemas
--   public.profiles, auth.users                               not the audit: the account itself is deleted by the
--                                                             application (Supabase Auth), before or after this call
--
-- The pseudonym is deterministic, so erasing twice (or rows of one person in several tables) gives one pseudonym and
-- the audit still shows that the same person acted; it is keyed, md5(<per-database secret> || ':' || id), so it
-- cannot be recomputed from a known id by anyone who cannot read guardian.erasure_key (only the owner can).
-- A bare md5('erased:' || id) could: whoever holds a list of former user ids could re-identify every row.
--
-- SECURITY DEFINER with a pinned search_path ending in pg_temp; EXECUTE for service_role only (and the owner).

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
  v_kept jsonb := '{}'::jsonb;
  v_total bigint := 0;
  v_count bigint;
  v_found boolean;
  v_org_where text;
  v_user_where text;
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

  -- 1. Users only. An organization's id first: erasing it would re-key the organization's rows, and it would vanish
  --    from the audit (and, before this check existed, from the backup rollback uses).
  FOR t IN
    SELECT format('%I.%I', ns.nspname, c.relname) AS rel, format('%s.%s', ns.nspname, c.relname) AS label, a.attname::text AS col
      FROM pg_class c
      JOIN pg_namespace ns ON ns.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.atttypid = 'uuid'::regtype
     WHERE c.relkind IN ('r', 'p')
       AND ((ns.nspname = 'public' AND c.relname = 'organizations' AND a.attname = 'id')
            OR (ns.nspname = 'public' AND c.relname IN ('organization_credits', 'credit_consumption_logs') AND a.attname = 'organization_id')
            OR (ns.nspname = 'guardian' AND c.relname = 'migration_journal' AND a.attname = 'organization_id')
            OR (ns.nspname LIKE 'guardian\_backup\_%' AND c.relname = 'organizations' AND a.attname = 'id'))
     ORDER BY ns.nspname <> 'public', c.relname <> 'organizations', ns.nspname, c.relname -- the plainest reason first
  LOOP
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I = $1)', t.rel, t.col) INTO v_found USING p_user_id;
    IF v_found THEN
      RAISE EXCEPTION 'guardian.erase_user: % is an organization''s id (found in %.%), not a user''s; nothing was changed', p_user_id, t.label, t.col
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'guardian.erase_user erases users only: pass the user id (auth.users.id, profiles.id); an organization''s data is kept, in the audit and in the backups rollback uses';
    END IF;
  END LOOP;

  -- Then a user: a known account or profile, an acting user in the log or the journal, or a user erased before.
  v_found := false;
  FOR t IN
    SELECT format('%I.%I', ns.nspname, c.relname) AS rel, a.attname::text AS col
      FROM pg_class c
      JOIN pg_namespace ns ON ns.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.atttypid = 'uuid'::regtype
     WHERE c.relkind IN ('r', 'p')
       AND ((ns.nspname = 'auth' AND c.relname = 'users' AND a.attname = 'id')
            OR (ns.nspname = 'public' AND c.relname = 'profiles' AND a.attname = 'id')
            OR (ns.nspname = 'public' AND c.relname = 'credit_consumption_logs' AND a.attname = 'user_id')
            OR (ns.nspname = 'guardian' AND c.relname = 'migration_journal' AND a.attname = 'actor_id'))
  LOOP
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I = $1)', t.rel, t.col) INTO v_found USING p_user_id;
    EXIT WHEN v_found;
  END LOOP;
  IF NOT v_found THEN
    v_found := EXISTS (SELECT 1 FROM guardian.migration_journal j
                        WHERE j.step = 'erasure' AND j.details ->> 'pseudonym' = v_new::text);
  END IF;
  IF NOT v_found THEN
    RAISE EXCEPTION 'guardian.erase_user: % is not a user''s id (not in auth.users, public.profiles, the consumption log''s user_id or the journal''s actor_id, and never erased before); nothing was changed', p_user_id
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'guardian.erase_user erases users only: pass the id of the user whose data is to be erased';
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

  -- 2. One UPDATE per table of the audit, touching only the rows that hold the id, with one scan. The backups
  --    (guardian_backup_*, guardian.backups) are read, never written: step 3.
  FOR t IN
    SELECT c.oid::regclass AS rel, ns.nspname || '.' || c.relname AS label,
           ns.nspname LIKE 'guardian\_backup\_%' AS backup,
           array_agg(a.attname::text ORDER BY a.attnum)
             FILTER (WHERE a.atttypid = 'uuid'::regtype AND a.attname <> 'organization_id') AS uuid_cols,
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
            OR ns.nspname LIKE 'guardian\_backup\_%')
       AND c.oid <> 'guardian.erasure_key'::regclass
       AND c.oid IS DISTINCT FROM to_regclass('guardian.backups')
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
    CONTINUE WHEN v_where IS NULL;
    IF t.backup THEN
      -- 3. A backup: counted, not changed (see the header: rollback and the backup's checksums depend on its rows).
      EXECUTE format('SELECT count(*) FROM %s WHERE %s', t.rel, v_where) INTO v_count USING p_user_id, v_new, v_old, v_new::text;
      IF v_count > 0 THEN
        v_kept := v_kept || jsonb_build_object(t.label, v_count);
      END IF;
      CONTINUE;
    END IF;
    EXECUTE format('UPDATE %s SET %s WHERE %s', t.rel, v_set, v_where)
      USING p_user_id, v_new, v_old, v_new::text;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count > 0 THEN
      v_rows := v_rows || jsonb_build_object(t.label, v_count);
      v_total := v_total + v_count;
    END IF;
  END LOOP;

  PERFORM set_config('guardian.audit_maintenance', coalesce(v_prev, ''), true);

  v_result := jsonb_build_object('pseudonym', v_new, 'rows', v_rows, 'total', v_total, 'keptInBackups', v_kept);
  INSERT INTO guardian.migration_journal (step, object_name, actor_id, details)
  VALUES ('erasure', 'guardian.erase_user', v_actor, v_result);

  RETURN v_result::json;
END
$fn$;

COMMENT ON FUNCTION guardian.erase_user(uuid) IS
  'GDPR erasure of a user (refuses an organization''s id or an unknown id): replaces the user id by a keyed deterministic pseudonym in the audit, never in the backups rollback uses (their rows still holding it are counted in keptInBackups); journals an erasure step without the original id; returns counts per table.';

REVOKE ALL ON FUNCTION guardian.erase_user(uuid) FROM PUBLIC, anon, authenticated;
GRANT USAGE ON SCHEMA guardian TO service_role;
GRANT EXECUTE ON FUNCTION guardian.erase_user(uuid) TO service_role;
