-- Privileges of the Supabase Data API roles on the credit tables, and what new tables get by default.
--
-- The roles anon, authenticated and service_role are Supabase's: this file adopts them and never creates or drops
-- them (sql/baseline/01_supabase.sql creates them only on a bare Postgres).
--
--   anon           nothing on these tables, not even SELECT.
--   authenticated  SELECT only; the row level security policies (sql/tenancy/*_select.sql) decide which rows.
--                  No INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER: credits move only through
--                  consume_credits_rpc / consume_credits_batch and the migration, and a profile (which decides the
--                  tenant and the super_admin role) cannot be rewritten by its own user.
--   service_role   left as it is (full access in Supabase; BYPASSRLS). The audit files narrow it further on the logs.
--
-- Objects other capabilities add are granted by their own files (sql/margins: plan_margins to service_role only;
-- sql/schema and sql/audit: nothing in schema guardian for the Data API roles). The RLS helpers' schema
-- guardian_rls is granted in 00_helpers.sql.
--
-- Supabase grants every new table in public to anon and authenticated through default privileges. The
-- ALTER DEFAULT PRIVILEGES below stop that for tables and sequences created from now on by the role running this
-- file (the migration role), so a new table stays invisible to the Data API until someone grants it explicitly.
-- Default privileges of other roles (e.g. supabase_admin) can only be changed by those roles.
DO $$
DECLARE
  t text;
  s text;
BEGIN
  FOREACH t IN ARRAY ARRAY['public.organizations', 'public.profiles', 'public.organization_credits',
                           'public.credit_actions', 'public.credit_consumption_logs'] LOOP
    EXECUTE format('REVOKE ALL ON TABLE %s FROM PUBLIC, anon, authenticated', t);
    EXECUTE format('GRANT SELECT ON TABLE %s TO authenticated', t);
    -- Sequences behind serial columns (credit_consumption_logs.id): no nextval() for the Data API roles either.
    FOR s IN SELECT pg_get_serial_sequence(t, a.attname)
               FROM pg_attribute a
              WHERE a.attrelid = t::regclass AND a.attnum > 0 AND NOT a.attisdropped
                AND pg_get_serial_sequence(t, a.attname) IS NOT NULL LOOP
      EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM PUBLIC, anon, authenticated', s);
    END LOOP;
  END LOOP;
END
$$;

ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM anon, authenticated;
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM anon, authenticated;
