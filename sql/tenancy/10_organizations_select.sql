-- public.organizations: who reads which rows. A member reads its own organization; a super_admin reads all
-- (the arm's form: sql/tenancy/00_helpers.sql).
DROP POLICY IF EXISTS guardian_select ON public.organizations;
CREATE POLICY guardian_select ON public.organizations
  AS PERMISSIVE FOR SELECT TO authenticated
  USING (id = (SELECT guardian_rls.current_org_id()) OR (SELECT guardian_rls.is_super_admin()) IS DISTINCT FROM false);
