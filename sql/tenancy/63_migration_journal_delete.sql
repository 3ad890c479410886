-- guardian.migration_journal: no DELETE by anon or authenticated (the journal is append-only and written by the
-- migration itself).
-- Their privileges are already revoked (01_roles_grants.sql); this restrictive policy is the second lock: it holds
-- even if a privilege or a permissive policy is added by mistake, because restrictive policies AND with the rest.
DROP POLICY IF EXISTS guardian_delete ON guardian.migration_journal;
CREATE POLICY guardian_delete ON guardian.migration_journal
  AS RESTRICTIVE FOR DELETE TO anon, authenticated
  USING (false);
