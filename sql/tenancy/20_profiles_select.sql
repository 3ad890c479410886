-- public.profiles: who reads which rows.
-- A user reads its own profile and the profiles of its organization's members; super_admin reads all.
-- Profiles decide the tenant (organization_id) and the super_admin role, so no user writes them directly
-- (see the insert/update/delete files): a user who could set its own organization_id could read any tenant.
DROP POLICY IF EXISTS guardian_select ON public.profiles;
CREATE POLICY guardian_select ON public.profiles
  AS PERMISSIVE FOR SELECT TO authenticated
  USING (id = (SELECT auth.uid())
       OR organization_id = (SELECT guardian_rls.current_org_id())
       OR (SELECT guardian_rls.is_super_admin()));
