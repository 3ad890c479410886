-- public.organizations: a super_admin updates organizations, as the CRM's own policy allowed ("super admins may do
-- anything" with organizations); no other authenticated user and no anon (no policy for them: row level security
-- refuses). The backend (service_role) bypasses row level security.
DROP POLICY IF EXISTS guardian_update ON public.organizations;
CREATE POLICY guardian_update ON public.organizations
  AS PERMISSIVE FOR UPDATE TO authenticated
  USING ((SELECT guardian_rls.is_super_admin())) WITH CHECK ((SELECT guardian_rls.is_super_admin()));
