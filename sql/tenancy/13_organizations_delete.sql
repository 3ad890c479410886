-- public.organizations: a super_admin deletes organizations, as the CRM's own policy allowed ("super admins may do
-- anything" with organizations); no other authenticated user and no anon (no policy for them: row level security
-- refuses). The backend (service_role) bypasses row level security.
DROP POLICY IF EXISTS guardian_delete ON public.organizations;
CREATE POLICY guardian_delete ON public.organizations
  AS PERMISSIVE FOR DELETE TO authenticated
  USING ((SELECT guardian_rls.is_super_admin()));
