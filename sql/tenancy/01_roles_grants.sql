-- Privileges of the Supabase Data API roles on the tables the program's policies and SECURITY DEFINER functions
-- read or write. Each revoke below closes something named (contract: "The application around the credits keeps
-- working"); every other privilege is left as the database has it, and nothing here touches default privileges or
-- any other table.
--
-- The roles anon, authenticated and service_role are Supabase's: this file adopts them and never creates or drops
-- them (sql/baseline/01_supabase.sql creates them only on a bare Postgres).
--
--   organization_credits, credit_consumption_logs (credit and log rows):
--     anon           nothing (tenant-owned rows; no reader of the public price list needs them).
--     authenticated  SELECT only; the row level security policies decide which rows. Credits move only through
--                    consume_credits_rpc / consume_credits_batch and the migration (no direct writes of credit or
--                    log rows: a restriction the contract requires; the log is append-only).
--   credit_actions (the price list): authenticated SELECT; INSERT, UPDATE, DELETE revoked from anon and
--     authenticated (prices are the backend's and the migration's). anon's SELECT is left as found: a public price
--     list stays readable.
--   organizations, profiles: the application's own privileges stay; row level security decides (members edit their
--     own profile, super_admins manage organizations). The tenancy and rank columns of profiles are guarded by
--     30_profiles_guard.sql.
--   every one of these tables: TRIGGER and TRUNCATE for the owner only (revoked from PUBLIC, anon, authenticated and
--     service_role). A trigger fires inside the program's SECURITY DEFINER functions and runs as their owner, so a
--     role that may create one runs code as the owner; TRUNCATE bypasses row level security and the append-only
--     audit. A restriction the contract requires.
--   service_role otherwise left as it is (full access in Supabase; BYPASSRLS). The audit files narrow it further on
--     the logs.
DO $$
DECLARE
  t text;
  s text;
BEGIN
  FOREACH t IN ARRAY ARRAY['public.organization_credits', 'public.credit_consumption_logs'] LOOP
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
  REVOKE INSERT, UPDATE, DELETE, REFERENCES ON TABLE public.credit_actions FROM PUBLIC, anon, authenticated;
  GRANT SELECT ON TABLE public.credit_actions TO authenticated;
  FOREACH t IN ARRAY ARRAY['public.organizations', 'public.profiles', 'public.organization_credits',
                           'public.credit_actions', 'public.credit_consumption_logs'] LOOP
    EXECUTE format('REVOKE TRIGGER, TRUNCATE ON TABLE %s FROM PUBLIC, anon, authenticated', t);
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'service_role') THEN
      EXECUTE format('REVOKE TRIGGER, TRUNCATE ON TABLE %s FROM service_role', t);
    END IF;
  END LOOP;
END
$$;
