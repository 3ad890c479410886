-- guardian.migration_journal: nobody on the Data API reads it.
-- The migration journal is read by service_role (BYPASSRLS) and the owner only. This restrictive policy keeps
-- every Data API role out even if a privilege is granted by mistake; no permissive policy exists, so RLS shows
-- anon and authenticated nothing.
DROP POLICY IF EXISTS guardian_select ON guardian.migration_journal;
CREATE POLICY guardian_select ON guardian.migration_journal
  AS RESTRICTIVE FOR SELECT TO anon, authenticated
  USING (false);
