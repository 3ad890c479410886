-- guardian.migration_journal: no INSERT by anon or authenticated (the journal is append-only and written by the
-- migration itself).
-- Their privileges are already revoked (01_roles_grants.sql); this restrictive policy is the second lock: it holds
-- even if a privilege or a permissive policy is added by mistake, because restrictive policies AND with the rest.
DROP POLICY IF EXISTS guardian_insert ON guardian.migration_journal;
CREATE POLICY guardian_insert ON guardian.migration_journal
  AS RESTRICTIVE FOR INSERT TO anon, authenticated
  WITH CHECK (false);
