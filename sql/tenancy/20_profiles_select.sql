-- public.profiles: who reads which rows. A user reads its own profile and its teammates' (the organization's team
-- list: a CRM without profile policies allowed it, and taking it away would be a loss no leak explains; where the
-- CRM's own policies did not allow it, preview names it as appearing); a super_admin reads all
-- (the arm's form: sql/tenancy/00_helpers.sql).
DROP POLICY IF EXISTS guardian_select ON public.profiles;
CREATE POLICY guardian_select ON public.profiles
  AS PERMISSIVE FOR SELECT TO authenticated
  USING (organization_id = (SELECT guardian_rls.current_org_id()) OR id = (SELECT auth.uid())
         OR (SELECT guardian_rls.is_super_admin()) IS DISTINCT FROM false);
