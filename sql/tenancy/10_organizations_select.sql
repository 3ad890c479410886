-- public.organizations: who reads which rows.
-- Members read their own organization; super_admin profiles read every organization.
DROP POLICY IF EXISTS guardian_select ON public.organizations;
CREATE POLICY guardian_select ON public.organizations
  AS PERMISSIVE FOR SELECT TO authenticated
  USING (id = (SELECT guardian_rls.current_org_id()) OR (SELECT guardian_rls.is_super_admin()));
